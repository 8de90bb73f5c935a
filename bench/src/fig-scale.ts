import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Ctx } from './context';
import { latestProfile, summarize } from './cpuprofile';
import { Daemon } from './daemon';
import { Floor } from './floor';
import { callsPerDevice, createLatency, fill, present } from './fill';
import { type LoopResult, type WalkResult, cycles, loop, walk } from './py';
import { createPath, scaleProfile, typeIds } from './profiles';
import { dumpTree, scratch } from './static-copy';

const LATENCY_N = 20;

/** Wall time of one `ls DIR > /dev/null` process, median of `runs`. */
export async function timeLs(dir: string, runs = 3): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const c = spawn('ls', [dir], { stdio: 'ignore' });
      c.on('error', reject);
      c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ls ${dir} exited ${code}`))));
    });
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

const mb = (kb: number) => kb / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Figure 5: 10,000 devices. ls of bus/mdev/devices, an mdevctl-style walk (parent and type of
 * every device through realpath), one create's latency and the daemon's RSS, each against its
 * baseline (tmpfs copy, or the same daemon at 0 devices).
 */
export async function figScale(ctx: Ctx): Promise<void> {
  const N = ctx.opts.devices;
  const profile = scaleProfile(4);
  const p = profile.parents[0]!;
  const ids = typeIds(p);
  const d = await Daemon.start({ profile, cpuProfDir: ctx.opts.cpuProf ?? undefined });
  const parentDir = d.path(...p.path.split('/'));
  const busDevices = d.path('bus', 'mdev', 'devices');
  let vfio20, vfioN, rss0, rssN, lat0, latN, f, statParent0, statParentN, statBus0, statBusN, lsMount, lsCopy, walkMount, walkCopy, devices, dumped;
  const copy = scratch('fig5');
  let floor: Floor | null = null;
  let rssWalked = NaN;
  const lsChanged: number[] = [];
  let fl: { ls: number; walk: WalkResult; statParent: LoopResult; statBus: LoopResult; vfio: LoopResult } | null = null;
  try {
    // Warm up (JIT, libfuse worker threads) with create/remove cycles that leave no device behind.
    await cycles([createPath(d.dir, p.name, ids[0]!)], busDevices, 1);
    rss0 = d.rssKb();
    statParent0 = await loop('stat', parentDir, 200, 2);
    statBus0 = await loop('stat', busDevices, 200, 2);
    const first = await createLatency(d, p.name, ids[0]!, LATENCY_N);
    lat0 = first.result;
    // A link in class/vfio-dev, at 20 devices (vfio0 is the first create's).
    const vfio = d.path('class', 'vfio-dev', 'vfio0');
    vfio20 = await loop('lstat', vfio, 50, 2, 2);
    ctx.log(`fig 5: creating ${N} devices with ${ctx.opts.writers} writers`);
    f = await fill(d, p.name, ids, N - 2 * LATENCY_N, ctx.opts.writers);
    ctx.log(`fig 5: ${f.devices.length} created in ${f.seconds.toFixed(1)} s`);
    const last = await createLatency(d, p.name, ids[0]!, LATENCY_N);
    latN = last.result;
    rssN = d.rssKb();
    statParentN = await loop('stat', parentDir, 20, 3, 2);
    statBusN = await loop('stat', busDevices, 20, 3, 2);
    ctx.log('fig 5: lstat in class/vfio-dev (one call, may take seconds)');
    vfioN = await loop('lstat', vfio, 3, 1, 0);
    devices = await present(d, [...first.devices, ...f.devices, ...last.devices]);

    ctx.log(`fig 5: writing the tmpfs copy of ${devices.length} devices`);
    dumped = await dumpTree(profile, devices, copy);
    // The C floor serves the same tree (the copy): the same ls, walk and stats.
    floor = await Floor.start(ctx, copy);
    ctx.log('fig 5: ls, alternating mount, floor and tmpfs');
    const ls: Record<'mount' | 'floor' | 'copy', number[]> = { mount: [], floor: [], copy: [] };
    for (let r = 0; r < 5; r++) {
      ls.mount.push(await timeLs(busDevices, 1));
      if (floor) ls.floor.push(await timeLs(floor.path('bus', 'mdev', 'devices'), 1));
      ls.copy.push(await timeLs(join(copy, 'bus', 'mdev', 'devices'), 1));
    }
    lsMount = median(ls.mount);
    lsCopy = median(ls.copy);
    // After any change the kernel's cached listing goes: the next ls reads it all again.
    for (let r = 0; r < 3; r++) {
      await cycles([createPath(d.dir, p.name, ids[0]!)], busDevices, 0.001);
      lsChanged.push(await timeLs(busDevices, 1));
    }
    ctx.log('fig 5: mdevctl-style walk on the tmpfs copy');
    walkCopy = await walk(copy, 600);
    ctx.log(`fig 5: mdevctl-style walk through the mount (budget ${ctx.opts.walkBudgetS} s)`);
    walkMount = await walk(d.dir, ctx.opts.walkBudgetS);
    // The walk made the kernel look up every device's path: the daemon now keeps a node per
    // inode the kernel holds (until FORGET).
    rssWalked = d.rssKb();
    if (floor) {
      ctx.log('fig 5: the same on the C floor');
      fl = {
        statParent: await loop('stat', floor.path(...p.path.split('/')), 20, 3, 2),
        statBus: await loop('stat', floor.path('bus', 'mdev', 'devices'), 20, 3, 2),
        vfio: await loop('lstat', floor.path('class', 'vfio-dev', 'vfio0'), 3, 1, 0),
        ls: median(ls.floor),
        walk: await walk(floor.dir, ctx.opts.walkBudgetS, false),
      };
    }
  } finally {
    await floor?.stop();
    await d.stop();
  }
  const noFloor = fl ? undefined : null;
  const calls = await callsPerDevice(profile, 100, (t) => walk(t.dir, 600, false));

  // The walk must give the same answer on both trees.
  let mismatches = 0;
  for (const [u, pt] of Object.entries(walkMount.result ?? {})) {
    const c = walkCopy.result?.[u];
    if (!c || c[0] !== pt[0] || c[1] !== pt[1]) mismatches++;
  }
  const partial = walkMount.walked < walkMount.devices;
  const n = devices.length;
  ctx.rows.push(
    {
      fig: '5',
      measure: `fill: create ${f.devices.length} devices, ${ctx.opts.writers} writers`,
      unit: '/s',
      value: f.devices.length / f.seconds,
      floorNote: 'n/a (creates)',
      note: `${f.seconds.toFixed(1)} s in all${Object.keys(f.errors).length ? `; ERRORS ${JSON.stringify(f.errors)}` : ''}`,
    },
    {
      fig: '5',
      measure: `one create at ${n} devices`,
      unit: 'ms',
      value: latN.meanUs / 1000,
      baselineLabel: 'at 0',
      baseline: lat0.meanUs / 1000,
      floorNote: 'n/a (creates)',
      note: `mean of ${LATENCY_N} sequential creates each`,
    },
    {
      fig: '5',
      measure: `daemon VmRSS at ${n} devices`,
      unit: 'MB',
      value: mb(rssN),
      baselineLabel: 'at 0',
      baseline: mb(rss0),
      floorNote: 'n/a',
      note:
        `${(((rssN - rss0) * 1024) / n).toFixed(0)} bytes per device; ${mb(rssWalked).toFixed(1)} MB after the walk had the kernel ` +
        `look up every device (${(((rssWalked - rssN) * 1024) / n).toFixed(0)} bytes more per device: the nodes the kernel holds)`,
    },
    {
      fig: '5',
      measure: `ls bus/mdev/devices (${n} entries)`,
      unit: 'ms',
      value: lsMount,
      baselineLabel: 'tmpfs copy',
      baseline: lsCopy,
      floor: fl?.ls ?? noFloor,
      note:
        `one ls process, median of 5, alternating with the floor and tmpfs (the kernel's cached listing: the first ls read it); ` +
        `right after a change, when the listing is read again: ${median(lsChanged).toFixed(1)} ms (median of 3), ` +
        `${(median(lsChanged) / lsCopy).toFixed(2)}x tmpfs`,
    },
    {
      fig: '5',
      measure: `mdevctl-style walk of ${n} devices`,
      unit: 'ms',
      value: walkMount.fullWalkMs,
      baselineLabel: 'tmpfs copy',
      baseline: walkCopy.walkMs + walkCopy.listMs,
      floor: fl?.walk.fullWalkMs ?? noFloor,
      note:
        (partial
          ? `EXTRAPOLATED: ${walkMount.walked} of ${n} devices walked in ${(walkMount.walkMs / 1000).toFixed(1)} s (budget), `
          : '') +
        `${walkMount.perDeviceMs.toFixed(2)} ms per device vs ${walkCopy.perDeviceMs.toFixed(3)}; ` +
        `results ${mismatches === 0 ? 'agree' : `DISAGREE on ${mismatches}`}; ${calls.summary}`,
    },
    {
      fig: '5',
      measure: `stat of the parent dir at ${n} devices`,
      unit: 'us',
      value: statParentN.meanUs,
      baselineLabel: 'at 0',
      baseline: statParent0.meanUs,
      floor: fl?.statParent.meanUs ?? noFloor,
      note: `devices/virtual/p0/p0; bus/mdev/devices: ${statBusN.meanUs.toFixed(1)} us vs ${statBus0.meanUs.toFixed(1)} us at 0${fl ? `, ${fl.statBus.meanUs.toFixed(1)} us on the floor` : ''}`,
    },
    {
      fig: '5',
      measure: `lstat class/vfio-dev/vfio0 at ${n} devices`,
      unit: 'us',
      value: vfioN.meanUs,
      baselineLabel: 'at 20',
      baseline: vfio20.meanUs,
      floor: fl?.vfio.meanUs ?? noFloor,
      note: `n=${vfioN.n}`,
    },
  );
  ctx.details.fig5 = {
    devices: n,
    fill: { seconds: f.seconds, errors: f.errors },
    createLatency: { at0: lat0, atN: latN },
    rssKb: { at0: rss0, atN: rssN, afterWalk: rssWalked },
    statParent: { at0: statParent0, atN: statParentN },
    statBusDevices: { at0: statBus0, atN: statBusN },
    lstatVfioDev: { at20: vfio20, atN: vfioN },
    ls: { mount: lsMount, copy: lsCopy, afterChange: lsChanged },
    walk: { mount: { ...walkMount, result: undefined }, copy: { ...walkCopy, result: undefined }, mismatches, calls },
    floor: fl,
    copy: dumped,
  };

  if (ctx.opts.cpuProf) {
    const file = latestProfile(ctx.opts.cpuProf);
    if (file) {
      const s = summarize(file, 15);
      ctx.details.fig5CpuProfile = { file, ...s };
      const line = (h: { fn: string; selfMs: number; totalMs: number }) =>
        `  ${(h.totalMs / 1000).toFixed(1)} s total, ${(h.selfMs / 1000).toFixed(1)} s self: ${h.fn}`;
      ctx.notes.push(
        `Daemon CPU profile during figure 5 (${(s.sampledMs / 1000).toFixed(0)} s sampled, ${file}); mdevfs functions by inclusive time:\n` +
          s.byTotal.slice(0, 10).map(line).join('\n') +
          '\n  by self time (all code):\n' +
          s.bySelf.slice(0, 8).map(line).join('\n'),
      );
    } else ctx.notes.push(`No .cpuprofile found in ${ctx.opts.cpuProf}`);
  }
}
