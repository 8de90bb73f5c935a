import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';

/** One line of the table: a figure measured against the baseline taken in the same run. */
export interface Row {
  fig: string;
  measure: string;
  unit: string;
  value: number | null;
  /** What the value is compared with (tmpfs copy, one create, 0 devices...). */
  baselineLabel?: string;
  baseline?: number | null;
  /** value / baseline unless given. */
  ratio?: number | null;
  /**
   * The same measure on the C floor daemon (bench/floor/floor.c), same run; null: no floor
   * in this run (say why in floorNote); undefined: the measure has none (floorNote says why).
   */
  floor?: number | null;
  floorNote?: string;
  note?: string;
}

export interface Results {
  date: string;
  machine: { nproc: number; kernel: string; node: string; python: string; mdevctl: string | null; pipeRoundTripUs?: number };
  options: object;
  rows: Row[];
  notes: string[];
  details: Record<string, unknown>;
  durationS?: number;
}

function version(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0] ?? null;
  } catch {
    return null;
  }
}

export function machine(): Results['machine'] {
  return {
    nproc: availableParallelism(),
    kernel: release(),
    node: process.version,
    python: version('python3', ['--version']) ?? 'missing',
    mdevctl: version('mdevctl', ['--version']),
  };
}

function fmt(n: number | null | undefined, unit = ''): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '-';
  const a = Math.abs(n);
  const s = a >= 1000 ? n.toFixed(0) : a >= 100 ? n.toFixed(1) : a >= 1 ? n.toFixed(2) : n.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

export function ratioOf(r: Row): number | null {
  if (r.ratio !== undefined) return r.ratio;
  if (r.value === null || r.baseline === null || r.baseline === undefined || r.baseline === 0) return null;
  return r.value / r.baseline;
}

export function floorRatioOf(r: Row): number | null {
  if (r.value === null || r.floor === null || r.floor === undefined || r.floor === 0) return null;
  // For rates (per second) more is better: the ratio is how many times slower mdevfs is.
  return r.unit === '/s' ? r.floor / r.value : r.value / r.floor;
}

/** The one table, in Markdown so it can go into docs/benchmarks.md as is. */
export function table(rows: Row[]): string {
  const head = ['Fig', 'Measure', 'mdevfs', 'Baseline (same run)', 'Ratio', 'C floor (same run)', 'vs floor', 'Note'];
  const body = rows.map((r) => [
    r.fig,
    r.measure,
    fmt(r.value, r.unit),
    r.baselineLabel ? `${fmt(r.baseline, r.unit)} (${r.baselineLabel})` : '-',
    ratioOf(r) === null ? '-' : `${fmt(ratioOf(r))}x`,
    r.floor === undefined || r.floor === null ? (r.floorNote ?? '-') : `${fmt(r.floor, r.unit)}${r.floorNote ? ` (${r.floorNote})` : ''}`,
    floorRatioOf(r) === null ? '-' : `${fmt(floorRatioOf(r))}x`,
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function writeJson(path: string, results: Results): void {
  const rows = results.rows.map((r) => ({ ...r, ratio: ratioOf(r), floorRatio: floorRatioOf(r) }));
  writeFileSync(path, JSON.stringify({ ...results, rows }, null, 2) + '\n');
}
