import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Ctx } from './context';
import { Daemon } from './daemon';
import { Floor } from './floor';
import { callsPerDevice, fill, present } from './fill';
import { scaleProfile, typeIds } from './profiles';
import { dumpTree, scratch } from './static-copy';

/**
 * mdevctl 1.2.0 hard-codes /sys and /etc/mdevctl.d: run it in a private mount namespace with
 * TREE bound over /sys and an empty config directory over /etc/mdevctl.d. Prints the time
 * mdevctl alone took (ns), measured inside the namespace.
 */
const SCRIPT = `set -e
mount --bind "$1" /sys
mount --bind "$2" /etc/mdevctl.d
s=$(date +%s%N)
mdevctl list > "$3"
e=$(date +%s%N)
echo $((e - s))`;

function mdevctlList(tree: string, etc: string, out: string): Promise<number> {
  return new Promise((resolve, reject) =>
    execFile('unshare', ['-m', '--propagation', 'private', 'sh', '-c', SCRIPT, 'sh', tree, etc, out], (err, stdout, stderr) =>
      err ? reject(new Error(`mdevctl list on ${tree} failed: ${stderr || err.message}`)) : resolve(Number(stdout.trim()) / 1e6),
    ),
  );
}

export function haveMdevctl(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v mdevctl && command -v unshare'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Figure 6: `mdevctl list` with 1,000 devices, through the mount vs the same tree as static files. */
export async function figMdevctl(ctx: Ctx): Promise<void> {
  if (!haveMdevctl()) {
    ctx.notes.push('Figure 6 skipped: mdevctl (or unshare) is not installed.');
    ctx.rows.push({ fig: '6', measure: 'mdevctl list', unit: 'ms', value: null, note: 'SKIPPED: mdevctl not installed' });
    return;
  }
  const M = ctx.opts.mdevctlDevices;
  const profile = scaleProfile(4);
  const p = profile.parents[0]!;
  const work = scratch('fig6');
  const etc = join(work, 'etc');
  mkdirSync(join(etc, 'scripts.d', 'callouts'), { recursive: true });
  mkdirSync(join(etc, 'scripts.d', 'notifiers'), { recursive: true });
  const copy = join(work, 'tree');
  const d = await Daemon.start({ profile });
  const onMount: number[] = [];
  const onCopy: number[] = [];
  const onFloor: number[] = [];
  let floor: Floor | null = null;
  try {
    ctx.log(`fig 6: creating ${M} devices`);
    const f = await fill(d, p.name, typeIds(p), M, ctx.opts.writers);
    const devices = await present(d, f.devices);
    await dumpTree(profile, devices, copy);
    // The C floor serves the same tree. Runs alternate copy, mount and floor; the first run
    // on a mount is cold (every name looked up), the second warm (answered from the caches).
    floor = await Floor.start(ctx, copy);
    ctx.log('fig 6: mdevctl list, alternating the tmpfs copy, the mount and the C floor');
    for (let i = 0; i < 3; i++) {
      onCopy.push(await mdevctlList(copy, etc, join(work, 'copy.out')));
      if (i === 2) break;
      onMount.push(await mdevctlList(d.dir, etc, join(work, 'mount.out')));
      if (floor) onFloor.push(await mdevctlList(floor.dir, etc, join(work, 'floor.out')));
    }
  } finally {
    await floor?.stop();
    await d.stop();
  }
  const calls = await callsPerDevice(profile, 100, (t) => mdevctlList(t.dir, etc, join(work, 'traced.out')));
  const lines = (f: string) => readFileSync(join(work, f), 'utf8').split('\n').filter(Boolean).sort();
  const a = lines('mount.out');
  const b = lines('copy.out');
  const eq = (x: string[], y: string[]) => x.length === y.length && x.every((l, i) => l === y[i]);
  const same = eq(a, b);
  const floorSame = onFloor.length ? eq(lines('floor.out'), b) : null;
  const median = onCopy.sort((x, y) => x - y)[1]!;
  const agree = `${a.length} lines listed; output ${same ? 'identical' : 'DIFFERS'} on both trees${floorSame === null ? '' : floorSame ? ' and the floor' : ', DIFFERS on the floor'}`;
  // The first run on a mount is cold (every name looked up), the second warm.
  for (const [i, kind] of [[0, 'cold'], [1, 'warm']] as const) {
    ctx.rows.push({
      fig: '6',
      measure: `mdevctl list, ${M} devices, ${kind}`,
      unit: 'ms',
      value: onMount[i]!,
      baselineLabel: 'tmpfs copy',
      baseline: median,
      floor: onFloor.length ? onFloor[i]! : null,
      note:
        i === 0
          ? `first run on each daemon: ${calls.summary}; ${agree}; tmpfs: median of 3`
          : 'second run: the kernel answers from its caches (entries, attributes, link targets, the listing)',
    });
  }
  ctx.details.fig6 = { devices: M, mountMs: onMount, copyMs: onCopy, floorMs: onFloor, linesMount: a.length, linesCopy: b.length, identical: same, calls };
}
