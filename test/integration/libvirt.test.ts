import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { CLI, REPO, backendArgs, cliEnv } from '../helpers/daemon';

// libvirt's node-device driver (Debian's libvirtd 9.0 and virsh) over the tree, inside
// `mdevfs exec --udev`: it enumerates through libudev and learns of new and removed mdevs only
// from udev events. test/helpers/libvirt.sh runs a private libvirtd next to the command.
// One command runs it by hand: npx tap test/integration/libvirt.test.ts

const missing = ['libvirtd', 'virsh'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
if (missing.length > 0) {
  t.fail(`${missing.join(' and ')} not installed (scripts/setup --test installs libvirt-daemon and libvirt-clients)`);
  process.exit(1);
}

/** Runs a bash script next to a private libvirtd inside `mdevfs exec --udev`. */
function withLibvirt(script: string, options: string[] = []) {
  const helper = join(REPO, 'test', 'helpers', 'libvirt.sh');
  return spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--udev', ...options, '--', helper, 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 120000,
    env: cliEnv(),
  });
}

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const node = (u: string) => `mdev_${u.replace(/-/g, '_')}_mtty`;

t.test('virsh nodedev-*: enumeration, a sysfs-created mdev, nodedev-create and nodedev-destroy', async (t) => {
  // Waits until virsh nodedev-list --cap mdev does or does not list $1: libvirt updates its list
  // when the udev event arrives, after the write that caused it has returned (an event that never
  // comes is a hang: withLibvirt's time limit ends it, status null).
  const script = `
    listed() { until virsh nodedev-list --cap mdev | grep -qx "$1"; [ $? = $2 ]; do sleep 0.05; done; }
    echo "== types"; virsh nodedev-list --cap mdev_types
    echo "== mdevs"; virsh nodedev-list --cap mdev
    echo ${U1} > /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create
    listed ${node(U1)} 0
    echo "== after a create through sysfs"; virsh nodedev-list --cap mdev
    virsh nodedev-dumpxml ${node(U1)}
    cat > /run/mdev.xml <<X
<device>
  <parent>mtty_mtty</parent>
  <capability type='mdev'>
    <type id='mtty-1'/>
    <uuid>${U2}</uuid>
  </capability>
</device>
X
    virsh nodedev-create /run/mdev.xml
    cat /sys/bus/mdev/devices/${U2}/mdev_type/name
    virsh nodedev-destroy ${node(U2)}
    [ -e /sys/bus/mdev/devices/${U2} ] && echo "${U2} still there"
    echo 1 > /sys/bus/mdev/devices/${U1}/remove
    listed ${node(U1)} 1
    echo "== after a remove through sysfs"; virsh nodedev-list --cap mdev`;
  const r = withLibvirt(script);
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      '== types',
      'mtty_mtty',
      '',
      '== mdevs',
      '',
      '== after a create through sysfs',
      node(U1),
      '',
      '<device>',
      `  <name>${node(U1)}</name>`,
      `  <path>/sys/devices/virtual/mtty/mtty/${U1}</path>`,
      '  <parent>mtty_mtty</parent>',
      '  <driver>',
      '    <name>mtty</name>',
      '  </driver>',
      "  <capability type='mdev'>",
      "    <type id='mtty-2'/>",
      `    <uuid>${U1}</uuid>`,
      '    <parent_addr>mtty</parent_addr>',
      "    <iommuGroup number='0'/>",
      '  </capability>',
      '</device>',
      '',
      // nodedev-create returns once libvirt has the device, which it learns from the udev event only
      // (it fails if that has not come within 60 s): libvirt heard the add.
      `Node device ${node(U2)} created from /run/mdev.xml`,
      '',
      'Single port serial',
      `Destroyed node device '${node(U2)}'`,
      '',
      '== after a remove through sysfs',
      '',
      '',
    ].join('\n'),
  );
});

t.test('a PCI parent (GVT-g): libvirt lists its types and creates and destroys an mdev on it', async (t) => {
  const uuid = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1003';
  const name = `mdev_${uuid.replace(/-/g, '_')}_0000_00_02_0`;
  const script = `
    echo "== types"; virsh nodedev-list --cap mdev_types
    cat > /run/mdev.xml <<X
<device>
  <parent>pci_0000_00_02_0</parent>
  <capability type='mdev'>
    <type id='i915-GVTg_V5_4'/>
    <uuid>${uuid}</uuid>
  </capability>
</device>
X
    virsh nodedev-create /run/mdev.xml
    virsh nodedev-dumpxml ${name} | grep -E "<path>|<parent>|<driver>|<name>intel|type id"
    virsh nodedev-destroy ${name}
    ls /sys/bus/mdev/devices/`;
  const r = withLibvirt(script, ['--profile', 'gvt']);
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      '== types',
      'pci_0000_00_02_0',
      '',
      `Node device ${name} created from /run/mdev.xml`,
      '',
      `  <path>/sys/devices/pci0000:00/0000:00:02.0/${uuid}</path>`,
      '  <parent>pci_0000_00_02_0</parent>',
      '  <driver>',
      '    <name>intel_vgpu_mdev</name>',
      "    <type id='i915-GVTg_V5_4'/>",
      `Destroyed node device '${name}'`,
      '',
      '',
    ].join('\n'),
  );
});
