import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  fn: string;
  selfMs: number;
  totalMs: number;
}

const ROOT = resolve(__dirname, '..', '..');

const maps = new Map<string, SourceMap | null>();

/** dist/x.js:line -> src/x.ts:line through the compiler's source map, where there is one. */
function original(file: string, line: number, column: number): string | undefined {
  if (!maps.has(file)) {
    const mapFile = `${file}.map`;
    maps.set(file, existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8'))) : null);
  }
  const entry = maps.get(file)?.findEntry(line, column) as { originalSource?: string; originalLine?: number } | undefined;
  if (!entry?.originalSource || entry.originalLine === undefined) return undefined;
  const src = entry.originalSource.startsWith('file://') ? entry.originalSource.slice(7) : resolve(dirname(file), entry.originalSource);
  return `${relative(ROOT, src)}:${entry.originalLine + 1}`;
}

function label(n: ProfileNode): string {
  const { functionName, url, lineNumber, columnNumber } = n.callFrame;
  const abs = url.startsWith('file://') ? url.slice(7) : '';
  const where = abs ? (original(abs, lineNumber, columnNumber) ?? `${relative(ROOT, abs)}:${lineNumber + 1}`) : url;
  return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
}

/**
 * Self and inclusive time per function of a V8 .cpuprofile (node --cpu-prof), ranked by
 * inclusive time among the project's own functions (dist/), and by self time overall.
 */
export function summarize(file: string, top = 12): { byTotal: HotSpot[]; bySelf: HotSpot[]; sampledMs: number } {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let sampledMs = 0;
  prof.samples.forEach((id, i) => {
    const ms = (prof.timeDeltas[i] ?? 0) / 1000;
    sampledMs += ms;
    const leaf = byId.get(id)!;
    const l = label(leaf);
    self.set(l, (self.get(l) ?? 0) + ms);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = label(byId.get(cur)!);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + ms);
    }
  });
  const spots = [...total.keys()].map((fn) => ({ fn, selfMs: self.get(fn) ?? 0, totalMs: total.get(fn)! }));
  const ours = (s: HotSpot) => / (src|dist)\//.test(s.fn); // the bench's own are under bench/
  return {
    byTotal: spots.filter(ours).sort((a, b) => b.totalMs - a.totalMs).slice(0, top),
    bySelf: spots.filter((s) => !s.fn.startsWith('(idle)') && !s.fn.startsWith('(program)')).sort((a, b) => b.selfMs - a.selfMs).slice(0, top),
    sampledMs,
  };
}

export function latestProfile(dir: string): string | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  return files.length ? join(dir, files[files.length - 1]!) : undefined;
}
