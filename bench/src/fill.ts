import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { Profile } from '../../dist/drivers/profile-types';
import { Daemon } from './daemon';
import { type WritesResult, writes } from './py';
import { createPath, typeIds } from './profiles';

export interface Fill {
  /** [uuid, type-id] of every device created, in the order the bench issued them. */
  devices: [string, string][];
  seconds: number;
  errors: Record<string, number>;
}

/**
 * Creates `count` devices through the mount: `writers` long-lived python3 processes, writer i
 * on type i mod types.length, each doing one open/write/close per device.
 */
export async function fill(d: Daemon, parentName: string, types: string[], count: number, writers: number): Promise<Fill> {
  const per = Array.from({ length: writers }, (_, i) => Math.floor(count / writers) + (i < count % writers ? 1 : 0));
  const jobs = per.map((n, i) => ({ type: types[i % types.length]!, uuids: Array.from({ length: n }, () => randomUUID()) }));
  const t0 = performance.now();
  const results: WritesResult[] = await Promise.all(jobs.map((j) => (j.uuids.length ? writes(createPath(d.dir, parentName, j.type), j.uuids) : null))).then(
    (rs) => rs.filter((r): r is WritesResult => r !== null),
  );
  const seconds = (performance.now() - t0) / 1000;
  const errors: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  return { devices: jobs.flatMap((j) => j.uuids.map((u) => [u, j.type] as [string, string])), seconds, errors };
}

/** Sequential creates on one type: per-create latency at the current population. */
export async function createLatency(d: Daemon, parentName: string, type: string, n: number): Promise<{ result: WritesResult; devices: [string, string][] }> {
  const uuids = Array.from({ length: n }, () => randomUUID());
  const result = await writes(createPath(d.dir, parentName, type), uuids);
  return { result, devices: uuids.map((u) => [u, type]) };
}

/** The devices that really exist, in the daemon's order, with the type the bench asked for. */
export async function present(d: Daemon, asked: [string, string][]): Promise<[string, string][]> {
  const typeOf = new Map(asked);
  const names = await fsp.readdir(d.path('bus', 'mdev', 'devices'));
  return names.filter((u) => typeOf.has(u)).map((u) => [u, typeOf.get(u)!]);
}

/** Daemon callbacks per device of `action`, on a traced daemon holding `n` devices. */
export async function callsPerDevice(
  profile: Profile,
  n: number,
  action: (d: Daemon) => Promise<unknown>,
): Promise<{ perDevice: number; counts: Record<string, number>; summary: string }> {
  const p = profile.parents[0]!;
  const d = await Daemon.start({ profile, traced: true });
  try {
    await fill(d, p.name, typeIds(p), n, 4);
    await d.trace();
    await action(d);
    const counts = (await d.trace()).counts;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const summary = `${(total / n).toFixed(0)} daemon calls per device (${Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${(v / n).toFixed(v / n < 1 ? 2 : 0)} ${k}`)
      .join(', ')}; traced run, ${n} devices)`;
    return { perDevice: total / n, counts, summary };
  } finally {
    await d.stop();
  }
}
