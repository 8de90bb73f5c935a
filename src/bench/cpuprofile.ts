import { readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
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

function label(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const file = url.startsWith('file://') ? relative(ROOT, url.slice(7)) : url;
  return `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`;
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
  const ours = (s: HotSpot) => s.fn.includes(' dist/') && !s.fn.includes('dist/bench/');
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
