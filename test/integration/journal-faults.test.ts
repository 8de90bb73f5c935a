import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Profile } from '../../src/drivers/profile-types';
import { SAMPLES } from '../../src/drivers/samples';
import type { JournalEntry } from '../../src/journal/journal';
import { BACKEND, CLI, backendArgs, cliEnv, scratch } from '../helpers/daemon';

// Profile faults (rules of the fault engine) and the journal through a real mount: `mdevfs exec
// --journal FILE` runs bash, whose writes fail as the rules say; FILE then holds each write with
// its writer, result and the rule that fired. (Runtime rules get their mount-level tests with the
// HTTP API; in-process tests cover them on both ABIs: test/unit/fault-emulation.test.ts.)

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const MTTY = 'devices/virtual/mtty/mtty';

function run(abi: string, script: string) {
  const tmp = scratch('mdevfs-journal-');
  const profile = join(tmp, 'profile.json');
  const journal = join(tmp, 'journal.jsonl');
  // Every second create of an mtty type fails in the vendor with ENOSPC.
  const p: Profile = { parents: SAMPLES.parents.map((x) => (x.name === 'mtty' ? { ...x, faults: { createErrno: 'ENOSPC', createFailEvery: 2 } } : x)) };
  writeFileSync(profile, JSON.stringify(p));
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--abi', abi, '--profile', profile, '--journal', journal, '--', 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 30000,
    killSignal: 'SIGKILL',
    env: cliEnv({ TMPDIR: tmp }),
  });
  const entries = readFileSync(journal, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as JournalEntry);
  return { ...r, entries };
}

for (const abi of ['6.1', '4.17']) {
  t.test(`${abi}: a profile fault fails bash's second create; the journal has both writes, the writer and the rule`, async (t) => {
    const script = `set -u
      echo $$
      echo ${U1} > /sys/${MTTY}/mdev_supported_types/mtty-2/create || exit 10
      if echo ${U2} > /sys/${MTTY}/mdev_supported_types/mtty-2/create; then exit 11; fi
      [ -e /sys/${MTTY}/${U2} ] && exit 12
      cat /sys/${MTTY}/mdev_supported_types/mtty-2/available_instances
      echo 1 > /sys/${MTTY}/${U1}/remove || exit 13`;
    const r = run(abi, script);
    t.equal(r.status, 0, r.stderr);
    const [pid, avail] = r.stdout.trim().split('\n');
    t.equal(avail, '11', 'the failed create took nothing');
    t.match(r.stderr, /No space left on device/, "bash's echo reports the vendor's ENOSPC");
    const writes = r.entries.filter((e) => e.kind === 'write');
    t.same(
      writes.map((e) => [e.op, e.path, e.data, e.bytes ?? e.errno]),
      [
        ['create', `/sys/${MTTY}/mdev_supported_types/mtty-2/create`, `${U1}\\n`, 37],
        ['create', `/sys/${MTTY}/mdev_supported_types/mtty-2/create`, `${U2}\\n`, 'ENOSPC'],
        ['remove', `/sys/${MTTY}/${U1}/remove`, '1\\n', 2],
      ],
    );
    const fired = r.entries.filter((e) => e.kind === 'fault');
    t.same(fired.map((e) => [e.op, e.path, e.errno]), [['create', `/sys/${MTTY}/${U2}`, 'ENOSPC']], 'one fault fired, at the vendor create');
    t.equal(writes[1]!.fault, fired[0]!.fault, "the failed write names the rule's id");
    t.equal(typeof fired[0]!.fault, 'number');
    t.same(writes[0]!.added, [U1]);
    t.same(writes[2]!.removed, [U1]);
    t.ok(r.entries.every((e, i) => e.seq === r.entries[0]!.seq + i), 'seq: one after the other');
    t.ok(writes.every((e) => e.ueventFrom! <= e.uevent), 'each write between two uevent SEQNUMs');
    if (BACKEND === 'fuse-native') {
      t.ok(writes.every((e) => e.caller === null), 'fuse-native: the caller is null, unknown (its binding passes none)');
    } else {
      t.same(writes.map((e) => e.caller), writes.map(() => ({ pid: Number(pid), uid: 0, gid: 0, comm: 'bash' })), "the writer: bash's pid, root, bash");
    }
  });
}
