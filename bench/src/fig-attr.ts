import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Ctx } from './context';
import { Daemon, type Trace } from './daemon';
import { Floor } from './floor';
import { type LoopResult, loop, writes } from './py';
import { copyMount, diffTrees, dumpTree, scratch } from './static-copy';

const ATTR = 'class/mdev_bus/mtty/mdev_supported_types/mtty-1/available_instances';
const CREATE = 'class/mdev_bus/mtty/mdev_supported_types/mtty-1/create';

type Op = 'read' | 'stat' | 'readlink';

/** Callbacks per syscall, e.g. "9 getattr, open, read, flush, release". */
function perCall(trace: Trace, calls: number): string {
  const parts = Object.entries(trace.counts)
    .sort((a, b) => b[1] - a[1])
    .map(([op, n]) => {
      const k = n / calls;
      return Math.abs(k - 1) < 0.01 ? op : `${Number.isInteger(k) ? k : k.toFixed(2)} ${op}`;
    });
  const total = Object.values(trace.counts).reduce((a, b) => a + b, 0) / calls;
  return `${total.toFixed(0)} daemon calls per syscall: ${parts.join(', ')}`;
}

const ROUNDS = 5;

/** Rounds of one loop as one: the mean over all calls, and the median of the rounds' medians. */
function combine(rs: LoopResult[]): LoopResult {
  const n = rs.reduce((a, r) => a + r.n, 0);
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { n, meanUs: rs.reduce((a, r) => a + r.meanUs * r.n, 0) / n, p50Us: mid(rs.map((r) => r.p50Us)), p99Us: mid(rs.map((r) => r.p99Us)) };
}

/**
 * Figures 1 and 2: one attribute read, and one stat/readlink of a device's mdev_type link,
 * from a long-lived python3 reader, through the mount and on a tmpfs copy of the same tree.
 */
export async function figAttr(ctx: Ctx): Promise<void> {
  const uuid = randomUUID();
  const copy = scratch('fig12');
  const cases: { fig: string; op: Op; rel: string; label: string }[] = [
    { fig: '1', op: 'read', rel: ATTR, label: 'read available_instances (open+fstat+read+close)' },
    { fig: '2', op: 'stat', rel: `bus/mdev/devices/${uuid}/mdev_type`, label: 'stat bus/mdev/devices/<uuid>/mdev_type' },
    { fig: '2', op: 'readlink', rel: `bus/mdev/devices/${uuid}/mdev_type`, label: 'readlink bus/mdev/devices/<uuid>/mdev_type' },
  ];
  const timed: { mount: LoopResult; tmpfs: LoopResult; floor: LoopResult | null }[] = [];

  const d = await Daemon.start();
  let floor: Floor | null = null;
  try {
    await writes(join(d.dir, CREATE), [uuid]);
    ctx.log('fig 1-2: copying the mount to tmpfs');
    const c = await copyMount(d.dir, copy);
    ctx.details.fig12Copy = c;
    // The copy used for figures 5 and 6 is written without FUSE: check here that it is the same tree.
    const dumped = scratch('fig12dump');
    await dumpTree('samples', [[uuid, 'mtty-1']], dumped);
    const diff = await diffTrees(copy, dumped);
    ctx.details.staticCopyCheck = { identical: diff.identical, differences: diff.differences.slice(0, 20) };
    ctx.notes.push(
      diff.identical
        ? `Static copies: a python walk of the live mount (${c.dirs} dirs, ${c.files} files, ${c.links} links) and dump-tree's rendering are identical (diff -r --no-dereference).`
        : `Static copies DIFFER between the mount walk and dump-tree (${diff.differences.length} differences, see JSON).`,
    );
    // The C floor serves the same copy (same contents, links and directories).
    floor = await Floor.start(ctx, copy);
    for (const k of cases) {
      ctx.log(`fig ${k.fig}: ${k.label}`);
      // Rounds alternate mount, floor and tmpfs so that all three see the same machine state.
      const rounds: { mount: LoopResult; tmpfs: LoopResult; floor: LoopResult | null }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const mount = await loop(k.op, join(d.dir, k.rel), 2000, 1);
        const onFloor = floor ? await loop(k.op, floor.path(k.rel), 2000, 1) : null;
        const tmpfs = await loop(k.op, join(copy, k.rel), 50_000, 0.3);
        rounds.push({ mount, tmpfs, floor: onFloor });
      }
      timed.push({
        mount: combine(rounds.map((r) => r.mount)),
        tmpfs: combine(rounds.map((r) => r.tmpfs)),
        floor: floor ? combine(rounds.map((r) => r.floor!)) : null,
      });
    }
  } finally {
    await floor?.stop();
    await d.stop();
  }

  // The same syscalls against a traced daemon: how many libfuse callbacks each one costs.
  const t = await Daemon.start({ traced: true });
  const perSyscall: string[] = [];
  try {
    await writes(join(t.dir, CREATE), [uuid]);
    for (const k of cases) {
      await t.trace();
      await loop(k.op, join(t.dir, k.rel), 100, 10, 0);
      perSyscall.push(perCall(await t.trace(), 100));
    }
  } finally {
    await t.stop();
  }

  cases.forEach((k, i) => {
    const { mount, tmpfs, floor: onFloor } = timed[i]!;
    // The median: on a shared machine the mean is mostly other processes' time slices.
    ctx.rows.push({
      fig: k.fig,
      measure: `${k.label}, median`,
      unit: 'us',
      value: mount.p50Us,
      baselineLabel: 'tmpfs copy',
      baseline: tmpfs.p50Us,
      floor: onFloor?.p50Us ?? null,
      note:
        `mean ${mount.meanUs.toFixed(1)} us (tmpfs ${tmpfs.meanUs.toFixed(1)}${onFloor ? `, floor ${onFloor.meanUs.toFixed(1)}` : ''}), ` +
        `n=${mount.n} in ${ROUNDS} rounds alternating with the floor and tmpfs; ${perSyscall[i]}`,
    });
  });
  ctx.details.fig12 = cases.map((k, i) => ({ ...k, ...timed[i], callbacks: perSyscall[i] }));
}
