// The worked example of docs/testing.md (TypeScript): a function that takes a sysfs root meets
// ENOSPC from a runtime fault; what it reports, and that nothing is left.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { start } from 'mdevfs';

/** The code under test: creates an mdev under a sysfs root, or says why not. */
function createMdev(sysfs: string, parent: string, type: string, uuid: string): string {
  const dir = join(sysfs, 'class/mdev_bus', parent, 'mdev_supported_types', type);
  try {
    writeFileSync(join(dir, 'create'), `${uuid}\n`);
    return 'created';
  } catch (err) {
    return `failed: ${(err as NodeJS.ErrnoException).code}`;
  }
}

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

t.test('createMdev reports ENOSPC and leaves nothing', async (t) => {
  const tree = await start({ profile: 'samples' });
  t.teardown(() => tree.stop());
  const available = join(tree.root, 'class/mdev_bus/mtty/mdev_supported_types/mtty-2/available_instances');
  const mark = await tree.mark();

  const rule = { match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } } as const;
  await tree.withFault(rule, async ({ id }) => {
    t.equal(createMdev(tree.root, 'mtty', 'mtty-2', U), 'failed: ENOSPC');
    t.same(readdirSync(join(tree.root, 'bus/mdev/devices')), [], 'no device left');
    t.equal(readFileSync(available, 'utf8'), '12\n', 'the capacity back');
    const writes = (await tree.journal({ since: mark })).filter((e) => e.kind === 'write');
    t.match(writes, [{ op: 'create', data: `${U}\\n`, errno: 'ENOSPC', fault: id }], 'the journal: the write, its errno, the rule');
  });
  t.same(await tree.control.faults(), [], 'the rule went with the block');

  t.equal(createMdev(tree.root, 'mtty', 'mtty-2', U), 'created', 'times: 1, so the next create works');
  await tree.wait({ device: U, state: 'active', timeout: 5 });
  await tree.reset();
  t.same((await tree.state()).devices, [], 'reset: back to the start');
});
