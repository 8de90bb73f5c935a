import { randomUUID } from 'node:crypto';
import type { Ctx } from './context';
import { Daemon } from './daemon';
import { Floor } from './floor';
import { cycles, writes } from './py';
import { copyMount, scratch } from './static-copy';
import { createPath, cyclesProfile, typeIds } from './profiles';

const SECONDS = 4;

function errs(e: Record<string, number>): string {
  const list = Object.entries(e);
  return list.length ? `; ERRORS ${list.map(([k, v]) => `${v}x ${k}`).join(', ')}` : '';
}

/** Requests a client never waits for: the kernel sends them and goes on. */
const UNWAITED = new Set(['RELEASE', 'RELEASEDIR', 'FORGET', 'BATCH_FORGET', 'INTERRUPT']);

/**
 * Figure 3: full create+remove cycles per second, one client (the first seconds of a new
 * daemon, then the same daemon warm), then 8 clients on 8 types.
 */
export async function figCycles(ctx: Ctx): Promise<void> {
  const profile = cyclesProfile();
  const p = profile.parents[0]!;
  const ids = typeIds(p);
  const d = await Daemon.start({ profile });
  let cold, seq, conc;
  let floorSeq = null;
  let floorConc = null;
  let floor: Floor | null = null;
  try {
    const devs = d.path('bus', 'mdev', 'devices');
    // A new daemon's first seconds include V8 compiling its hot paths; the next ones do not.
    ctx.log('fig 3: sequential create/remove cycles, new daemon');
    cold = await cycles([createPath(d.dir, p.name, ids[0]!)], devs, SECONDS);
    ctx.log('fig 3: sequential create/remove cycles, warm');
    seq = await cycles([createPath(d.dir, p.name, ids[0]!)], devs, SECONDS);
    ctx.log('fig 3: 8 concurrent clients on 8 types');
    conc = await cycles(ids.slice(0, 8).map((id) => createPath(d.dir, p.name, id)), devs, SECONDS);
    // The floor serves a copy of this tree with one device: each cycle writes the same create
    // file and that device's remove file (the floor accepts writes and changes nothing).
    const kept = randomUUID();
    await writes(createPath(d.dir, p.name, ids[0]!), [kept]);
    const copy = scratch('fig3');
    await copyMount(d.dir, copy);
    floor = await Floor.start(ctx, copy);
    if (floor) {
      ctx.log('fig 3: the same write(2)s on the C floor');
      const remove = floor.path('bus', 'mdev', 'devices', kept, 'remove');
      const fdevs = floor.path('bus', 'mdev', 'devices');
      floorSeq = await cycles([createPath(floor.dir, p.name, ids[0]!)], fdevs, SECONDS, remove);
      floorConc = await cycles(ids.slice(0, 8).map((id) => createPath(floor!.dir, p.name, id)), fdevs, SECONDS, remove);
    }
  } finally {
    await floor?.stop();
    await d.stop();
  }

  // Callbacks per cycle, from a traced daemon.
  const t = await Daemon.start({ profile, traced: true });
  let perCycle = '';
  let waited = 0;
  try {
    await t.trace();
    const r = await cycles([createPath(t.dir, p.name, ids[0]!)], t.path('bus', 'mdev', 'devices'), 1);
    const counts = (await t.trace()).counts;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    waited = Object.entries(counts).reduce((a, [k, v]) => (UNWAITED.has(k) ? a : a + v), 0) / r.cycles;
    perCycle = `${(total / r.cycles).toFixed(0)} daemon calls per cycle (${Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${(v / r.cycles).toFixed(0)} ${k}`)
      .join(', ')})`;
  } finally {
    await t.stop();
  }

  // One client waits for each of its requests in turn: each is at least a round trip between
  // two processes, which this run measured over a pipe before its first figure. At that cost
  // the waited requests alone allow this many cycles a second, to any daemon.
  const pipeUs = ctx.details.pipeRoundTripUsAtStart as number | undefined;
  const bound =
    pipeUs && waited
      ? `; ${waited.toFixed(0)} waited requests per cycle (all but ${[...UNWAITED].join(', ')}): at this run's pipe round trip (${pipeUs.toFixed(1)} us) they alone allow at most ${Math.round(1e6 / (waited * pipeUs))} cycles/s`
      : '';

  ctx.rows.push({
    fig: '3',
    measure: `create+remove cycles, 1 client, a new daemon's first ${SECONDS} s`,
    unit: '/s',
    value: cold.perSecond,
    note: `${(1000 / cold.perSecond).toFixed(2)} ms per cycle; V8 still compiling the daemon's hot paths${errs(cold.errors)}`,
  });
  ctx.rows.push({
    fig: '3',
    measure: `create+remove cycles, 1 client, the next ${SECONDS} s`,
    unit: '/s',
    value: seq.perSecond,
    floor: floorSeq?.perSecond ?? null,
    floorNote: floorSeq ? 'the same write(2)s, static tree' : undefined,
    note: `${(1000 / seq.perSecond).toFixed(2)} ms per cycle; ${perCycle}${bound}${errs(seq.errors)}`,
  });
  ctx.rows.push({
    fig: '3',
    measure: 'create+remove cycles, 8 clients on 8 types',
    unit: '/s',
    value: conc.perSecond,
    baselineLabel: '1 client',
    baseline: seq.perSecond,
    floor: floorConc?.perSecond ?? null,
    note: `per client ${Math.min(...conc.perWorker)}-${Math.max(...conc.perWorker)} cycles in ${SECONDS} s${errs(conc.errors)}`,
  });
  ctx.details.fig3 = { cold, sequential: seq, concurrent: conc, waitedPerCycle: waited, perCycle, floor: { sequential: floorSeq, concurrent: floorConc } };
}
