import { randomUUID } from 'node:crypto';
import type { Ctx } from './context';
import { Daemon, type Trace } from './daemon';
import { type BurstResult, burst, writes } from './py';
import { createPath, fanoutProfile, typeIds } from './profiles';

/** How the daemon saw a set of concurrent writes: most in flight at once, and how many queued. */
export function inFlight(writesSeen: Trace['writes']): { maxInFlight: number; afterPrevious: number; spanMs: number } {
  const events = writesSeen.flatMap((w) => [
    { t: w.t0, d: 1 },
    { t: w.t1, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let cur = 0;
  let maxInFlight = 0;
  for (const e of events) maxInFlight = Math.max(maxInFlight, (cur += e.d));
  const byArrival = [...writesSeen].sort((a, b) => a.t0 - b.t0);
  // A write that reached the daemon only after the previous one was answered was held back.
  let afterPrevious = 0;
  for (let i = 1; i < byArrival.length; i++) if (byArrival[i]!.t0 >= byArrival[i - 1]!.t1) afterPrevious++;
  const spanMs = byArrival.length ? Math.max(...byArrival.map((w) => w.t1)) - byArrival[0]!.t0 : 0;
  return { maxInFlight, afterPrevious, spanMs };
}

/**
 * Where each writer is in the kernel a moment after the start (/proc/PID/stat and stack).
 * /proc/PID/stack hides __sched frames (down_write, rwsem_down_write_slowpath, schedule), so a
 * writer asleep in fuse_file_write_iter itself, before fuse_direct_io has sent the WRITE, is
 * waiting for the inode lock that fuse_file_write_iter takes for a direct write without
 * FOPEN_PARALLEL_DIRECT_WRITES; one in request_wait_answer has its WRITE at the daemon.
 */
export function classifyStacks(stacks: BurstResult['stacks']): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of stacks ?? []) {
    let k: string;
    const top = s?.frames[0] ?? '';
    if (!s || s.frames.length === 0) k = 'done/unknown';
    else if (s.frames.some((f) => f.startsWith('request_wait_answer'))) k = 'in request_wait_answer (WRITE sent, waiting for the daemon)';
    else if (top.startsWith('fuse_file_write_iter')) k = `asleep (${s.state}) at ${top} before any request (inode lock)`;
    else k = `other (${s.state}): ${s.frames.slice(0, 3).join(' < ')}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/**
 * Figure 4: with a 50 ms vendor create, N concurrent creates take (total / one create) times
 * as long as one. The kernel's mdev core gives ~1 on different types; so does mdevfs, except on
 * one type, where the kernel's FUSE layer serialises writes to the same file.
 */
export async function figFanout(ctx: Ctx): Promise<void> {
  const profile = fanoutProfile(ctx.opts.delayMs);
  const [fan, ...qs] = profile.parents;
  const fanIds = typeIds(fan!);
  const qTypes = qs.flatMap((q) => typeIds(q).map((id) => [q.name, id] as const));
  const w = (root: string, parentName: string, id: string): [string, string] => [createPath(root, parentName, id), randomUUID()];

  const d = await Daemon.start({ profile });
  const r: Record<string, BurstResult> = {};
  let single;
  try {
    ctx.log('fig 4: one create (50 ms vendor delay), 5 times');
    single = await writes(createPath(d.dir, fan!.name, fanIds[31]!), Array.from({ length: 5 }, () => randomUUID()));
    ctx.log('fig 4: concurrent creates');
    r.types32 = await burst(fanIds.map((id) => w(d.dir, fan!.name, id)));
    r.parents8 = await burst(qTypes.map(([pn, id]) => w(d.dir, pn, id)));
    r.types8 = await burst(fanIds.slice(0, 8).map((id) => w(d.dir, fan!.name, id)));
    r.oneType8 = await burst(Array.from({ length: 8 }, () => w(d.dir, fan!.name, fanIds[8]!)));
  } finally {
    await d.stop();
  }

  // Evidence for the one-type figure: what the daemon sees, and where the writers wait.
  ctx.log('fig 4: traced daemon, 8 creates on one type vs on 8 types');
  const t = await Daemon.start({ profile, traced: true });
  let one, eight, stacksOne, stacksEight;
  try {
    await t.trace();
    const b1 = await burst(Array.from({ length: 8 }, () => w(t.dir, fan!.name, fanIds[9]!)), ctx.opts.delayMs / 2);
    one = inFlight((await t.trace()).writes);
    stacksOne = classifyStacks(b1.stacks);
    const b8 = await burst(fanIds.slice(10, 18).map((id) => w(t.dir, fan!.name, id)), ctx.opts.delayMs / 2);
    eight = inFlight((await t.trace()).writes);
    stacksEight = classifyStacks(b8.stacks);
  } finally {
    await t.stop();
  }

  const one1 = single.meanUs / 1000;
  const errors = Object.values(r).flatMap((b) => b.each.filter((e) => e.err).map((e) => e.err));
  const add = (measure: string, b: BurstResult, note = '') =>
    ctx.rows.push({ fig: '4', measure, unit: 'ms', value: b.totalMs, baselineLabel: 'one create', baseline: one1, floorNote: 'n/a (vendor delay)', note });
  add('32 concurrent creates, 32 types, 1 parent', r.types32!);
  add('32 concurrent creates, 8 parents x 4 types', r.parents8!);
  add('8 concurrent creates, 8 types', r.types8!, `daemon saw ${eight.maxInFlight} writes in flight at once`);
  const ends = r.oneType8!.each.map((e) => e.endMs).sort((a, b) => a - b);
  add(
    '8 concurrent creates, ONE type',
    r.oneType8!,
    `writers finish at ${ends.map((e) => e.toFixed(0)).join('/')} ms; daemon saw at most ${one.maxInFlight} in flight, ` +
      `${one.afterPrevious}/7 arrived only after the previous reply; kernel stacks at ${ctx.opts.delayMs / 2} ms: ` +
      Object.entries(stacksOne)
        .map(([k, v]) => `${v} ${k}`)
        .join(', '),
  );
  if (errors.length) ctx.notes.push(`Figure 4: ${errors.length} creates failed: ${[...new Set(errors)].join(', ')}`);
  ctx.details.fig4 = { delayMs: ctx.opts.delayMs, single, bursts: r, traced: { oneType: one, eightTypes: eight, stacksOne, stacksEight } };
}
