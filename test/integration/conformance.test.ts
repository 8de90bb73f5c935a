import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_BACKEND } from '../../src/fuse/backend-registry';
import { CONFORMANCE, expected, runScenario } from '../helpers/conformance';
import { BACKEND } from '../helpers/daemon';

// Every scenario recorded on the real 6.1 kernel must give the same bytes through mdevfs.
// Where a difference is deliberate, accepted/NAME.txt (or accepted/<backend>/NAME.txt, for
// one backend only) holds the emulator's output and docs/deviations.md says why; the
// kernel's transcript stays the reference.
const names = readdirSync(join(CONFORMANCE, 'scenarios'))
  .filter((f) => f.endsWith('.sh'))
  .map((f) => f.replace(/\.sh$/, ''))
  .sort();

t.ok(names.length >= 7, 'the fixtures are there');

for (const name of names) {
  t.test(name, async (t) => {
    const candidates = [join(CONFORMANCE, 'accepted', BACKEND ?? DEFAULT_BACKEND, `${name}.txt`), join(CONFORMANCE, 'accepted', `${name}.txt`)];
    const acceptedFile = candidates.find((f) => existsSync(f)) ?? '';
    const accepted = existsSync(acceptedFile) ? readFileSync(acceptedFile, 'utf8') : undefined;
    const r = runScenario(name);
    t.equal(r.status, 0, 'the scenario ran to its end');
    if (accepted === undefined) {
      t.equal(r.output, expected(name), 'byte for byte the real kernel');
    } else {
      t.equal(r.output, accepted, 'byte for byte the kernel, but for the documented deviations');
      t.not(accepted, expected(name), 'an accepted deviation that no longer differs should be deleted');
    }
  });
}
