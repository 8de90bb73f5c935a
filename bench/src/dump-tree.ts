/**
 * `node bench/dist/dump-tree.js PROFILE.json DEVICES.json DEST`: writes, as real directories,
 * files and symlinks under DEST, the tree an mdevfs with this profile shows once the devices
 * in DEVICES.json ([[uuid, type-id], ...], in creation order) exist. It renders the same
 * SysfsTree the daemon serves, in this (unmounted) process, without FUSE: walking a mount of
 * 10,000 devices through FUSE would take longer than the whole bench. static-copy.ts checks on a
 * small tree that this gives exactly what a walk of the live mount gives.
 */
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../dist/base/clock';
import { Emulation } from '../../dist/emulation';
import { loadProfile } from '../../dist/drivers/profile';
import { silentLogger } from '../../dist/base/log';
import { type Node, relativeTarget } from '../../dist/sysfs/nodes';

const instant: Clock = { sleep: () => Promise.resolve() };

function dump(node: Node, parts: string[], dest: string, counts: Record<string, number>): void {
  const p = join(dest, ...parts);
  switch (node.kind) {
    case 'dir': {
      if (parts.length > 0) mkdirSync(p);
      chmodSync(p, 0o755);
      counts.dirs!++;
      for (const name of node.names()) {
        const child = node.lookup(name);
        if (child) dump(child, [...parts, name], dest, counts);
      }
      return;
    }
    case 'link':
      symlinkSync(relativeTarget(parts.slice(0, -1), node.target), p);
      counts.links!++;
      return;
    case 'attr': {
      let content = '';
      if (node.mode & 0o444 && node.show) {
        try {
          content = node.show();
        } catch {
          counts.unreadable!++;
        }
      }
      writeFileSync(p, content, { encoding: 'latin1' });
      chmodSync(p, node.mode);
      counts.files!++;
      return;
    }
  }
}

async function main(): Promise<void> {
  const [profileFile, devicesFile, dest] = process.argv.slice(2);
  if (!profileFile || !devicesFile || !dest) throw new Error('usage: dump-tree PROFILE.json DEVICES.json DEST');
  const t0 = performance.now();
  const { core, tree } = new Emulation(loadProfile(profileFile), { log: silentLogger, clock: instant });
  const devices = JSON.parse(readFileSync(devicesFile, 'utf8')) as [string, string][];
  const types = new Map([...core.parents.values()].flatMap((p) => [...p.types.values()].map((t) => [t.id, t] as const)));
  for (const [uuid, typeId] of devices) {
    const type = types.get(typeId);
    if (!type) throw new Error(`no type ${typeId} in ${profileFile}`);
    await core.create(type, uuid);
  }
  const t1 = performance.now();
  const counts = { dirs: 0, files: 0, links: 0, unreadable: 0 };
  mkdirSync(dest, { recursive: true });
  dump(tree.root, [], dest, counts);
  process.stdout.write(JSON.stringify({ ...counts, createMs: t1 - t0, writeMs: performance.now() - t1 }) + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`dump-tree: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
