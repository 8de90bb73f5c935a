import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { backendArgs, CLI, cliEnv, scratch } from '../helpers/daemon';

// The full mdevctl session is a real-kernel fixture (test/conformance/scenarios/mdevctl.sh). mdevctl
// checks available_instances before it writes, so the kernel's own create errors reach its users
// only when a create fails although instances were advertised: a vendor that fails under load.
const parent = (name: string, errno: string) => ({
  name,
  path: `devices/virtual/${name}/${name}`,
  class: name,
  mdevDriver: name,
  capacity: { model: 'constant', value: 4 },
  faults: { createErrno: errno, createFailEvery: 2 },
  types: [{ name: 't' }],
});

t.test('mdevctl start reports the kernel errno of a failed create', async (t) => {
  const file = join(scratch('mdevfs-mdevctl-'), 'profile.json');
  writeFileSync(file, JSON.stringify({ parents: [parent('busy', 'EUSERS'), parent('full', 'ENOSPC')] }));
  const script = `for p in busy full; do for n in 1 2; do
      mdevctl start -u 00000000-0000-0000-0000-0000000000$n$([ $p = busy ] && echo 0 || echo 1) -p $p -t $p-t; echo "rc=$?"
    done; done; mdevctl list`;
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', file, '--', 'bash', '-c', `(${script}) 2>&1`], {
    encoding: 'utf8',
    timeout: 60000,
    env: cliEnv(),
  });
  t.equal(
    r.stdout,
    [
      'rc=0',
      'Error: Failed to create mdev 00000000-0000-0000-0000-000000000020, type busy-t on busy',
      '',
      'Caused by:',
      '    Too many users (os error 87)',
      'rc=1',
      'rc=0',
      'Error: Failed to create mdev 00000000-0000-0000-0000-000000000021, type full-t on full',
      '',
      'Caused by:',
      '    No space left on device (os error 28)',
      'rc=1',
      '00000000-0000-0000-0000-000000000010 busy busy-t manual',
      '00000000-0000-0000-0000-000000000011 full full-t manual',
      '',
      '',
    ].join('\n'),
  );
  t.equal(r.status, 0);
});
