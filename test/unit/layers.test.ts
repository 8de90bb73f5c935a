import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';

/**
 * The layers of src/, lowest first. A module may import its own layer and those below it,
 * never one above: the import graph is the order in which the code can be read.
 *
 * - base: errno, the kernel's parsers, the IDA, the clock, the log; imports nothing of the project.
 * - devices: the kernel's driver core (buses, host devices, their drivers). Below the mdev core
 *   because an mdev parent is a host device, as mdev_core.c sits on drivers/base.
 * - core: the mdev core. No filesystem.
 * - drivers: vendor drivers and profiles, configured onto the core and the devices.
 * - sysfs: the tree and Kernfs, computed from the core and the devices.
 * - faults: the fault engine (rules checked at the kernel-level steps); knows nothing but base.
 * - journal: the record of every write and fault fired, fed by Kernfs' write path and the core's events.
 * - events: uevents rendered from the core's and the devices' events, with the tree's kobjects.
 * - fuse: serves a Kernfs at a mountpoint.
 * - emulation (src/emulation.ts): the Emulation, which owns one (core, host devices, drivers, tree,
 *   events) and changes it (add, remove a parent, reset).
 * - control: the control socket, which changes a running emulation.
 * - record: reads a host into a profile, checked by building it as an emulation.
 * - cli: the `mdevfs` command, on top of everything.
 * - index (src/index.ts): the package's API for test code (docs/testing.md): starts the command as a
 *   child process and speaks the control API with control's client; nothing in src/ imports it.
 * Layers that do not import each other (drivers and sysfs, fuse and emulation) are ordered arbitrarily.
 */
const LAYERS = ['base', 'faults', 'devices', 'core', 'drivers', 'sysfs', 'journal', 'events', 'fuse', 'emulation', 'control', 'record', 'cli', 'index'];

/** Imports allowed to run back up, each with its reason. None today. */
const EXCEPTIONS: { from: string; to: string; why: string }[] = [];

const SRC = resolve(__dirname, '..', '..', 'src');

interface Edge {
  from: string; // path relative to src/, e.g. core/core.ts
  to: string; // resolved target relative to src/, without extension
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import (static, type-only, re-export, dynamic, require) of every module under root, relative to root. */
function importGraph(root = SRC): Edge[] {
  const spec = /(?:^|[\s;])(?:import|export)\s[^;'"]*?from\s*'([^']+)'|(?:^|[\s;])import\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|\brequire\(\s*'([^']+)'\s*\)/gm;
  const edges: Edge[] = [];
  for (const file of sources(root)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(spec)) {
      const s = m[1] ?? m[2] ?? m[3] ?? m[4]!;
      if (!s.startsWith('.')) continue;
      edges.push({ from: relative(root, file), to: relative(root, resolve(dirname(file), s)).replace(/\.(ts|js)$/, '') });
    }
  }
  return edges;
}

/** The layer of a path relative to src/: its first directory, or a top-level module's name. */
function layerOf(path: string): string {
  const first = path.split('/')[0]!;
  return first.replace(/\.ts$/, '');
}

/** The imports that run back up (or leave src/, or reach a layer not in LAYERS). */
function violations(edges: readonly Edge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const from = layerOf(e.from);
    const to = layerOf(e.to);
    if (EXCEPTIONS.some((x) => x.from === e.from && x.to === e.to)) continue;
    if (e.to.startsWith('..')) out.push(`${e.from} imports ${e.to}, outside src/`);
    else if (!LAYERS.includes(from)) out.push(`${e.from}: layer "${from}" is not in LAYERS`);
    else if (!LAYERS.includes(to)) out.push(`${e.from} imports ${e.to}: layer "${to}" is not in LAYERS`);
    else if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) out.push(`${e.from} (${from}) imports ${e.to} (${to}), a layer above it`);
  }
  return out;
}

t.test('no import in src/ runs back up the layers', (t) => {
  const edges = importGraph();
  // The graph was read: a few imports known to exist are in it.
  t.ok(edges.some((e) => e.from === 'core/core.ts' && e.to === 'base/errno'), 'core/core.ts imports base/errno');
  t.ok(edges.some((e) => e.from === 'cli/main.ts' && e.to === 'fuse/backend-registry'), 'a dynamic import is read');
  t.ok(edges.some((e) => e.from === 'sysfs/buses.ts' && e.to === 'devices/device-model'), 'a type-only import is read');
  t.same(violations(edges), []);
  t.end();
});

t.test('base imports nothing of the project outside base', (t) => {
  const out = importGraph().filter((e) => layerOf(e.from) === 'base' && layerOf(e.to) !== 'base');
  t.same(out, []);
  t.end();
});

t.test('the check names an import that runs back up', (t) => {
  t.same(violations([{ from: 'core/mdev-objects.ts', to: 'sysfs/tree' }]), ['core/mdev-objects.ts (core) imports sysfs/tree (sysfs), a layer above it']);
  t.same(violations([{ from: 'base/errno.ts', to: 'core/core' }]), ['base/errno.ts (base) imports core/core (core), a layer above it']);
  t.same(violations([{ from: 'fuse/x.ts', to: '../bench/run' }]), ['fuse/x.ts imports ../bench/run, outside src/']);
  t.same(violations([{ from: 'cli/main.ts', to: 'base/log' }, { from: 'core/core.ts', to: 'core/mdev-objects' }]), []);
  t.end();
});

t.test('the benchmark loads mdevfs from the built dist/, never from src/', (t) => {
  // A module of src/ compiled into bench/dist/ would find nothing it locates from __dirname
  // (the profile schema, its generated validator), and would not be what the bench measures.
  const out = importGraph(join(SRC, '..', 'bench', 'src')).filter((e) => e.to.startsWith('..') && !e.to.startsWith('../../dist/'));
  t.same(out, []);
  t.ok(importGraph(join(SRC, '..', 'bench', 'src')).some((e) => e.to === '../../dist/emulation'), 'the graph of bench/src was read');
  t.end();
});
