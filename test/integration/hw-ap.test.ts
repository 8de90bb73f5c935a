import t, { type Test } from 'tap';
import { AP } from '../../src/drivers/builtin/ap';
import { daemonPerTest, sh, startDaemon } from '../helpers/daemon';
import { execWith, writeErrno } from '../helpers/hw';

// s390 vfio-ap (docs/hardware.md) through the mount: the matrix device on the matrix
// bus, the mdev attributes with kstrtoul parsing, exact formats and the kernel's errors against the
// host AP configuration the built-in declares (cards 05-07, domains 0004/0047/00ab; apmask/aqmask
// give 05, 06, 0004 and 00ab to vfio_ap).
const M = 'devices/vfio_ap/matrix';
const TYPE = `${M}/mdev_supported_types/vfio_ap-passthrough`;
const A = 'aa000000-0000-4000-8000-000000000001';
const B = 'aa000000-0000-4000-8000-000000000002';

const d = daemonPerTest({ profile: 'ap' });
const run = (s: string) => sh(d.dir, s);
/** Writes value and a newline to an attribute of an mdev: "ok" or the errno's name. */
const put = (uuid: string, attr: string, value: string) => writeErrno(d.dir, `${M}/${uuid}/${attr}`, `b${JSON.stringify(`${value}\n`)}`);
const createAB = `echo ${A} > ${TYPE}/create && echo ${B} > ${TYPE}/create`;
/** A and B created; A given adapters 05, 06 and domains 0004, 00ab; B domain 0047. */
function assignAB(t: Test) {
  t.equal(run(createAB).code, 0);
  for (const [uuid, attr, value] of [[A, 'assign_adapter', '5'], [A, 'assign_adapter', '6'], [A, 'assign_domain', '4'], [A, 'assign_domain', '0xab'], [B, 'assign_domain', '0x47']] as const) {
    t.equal(put(uuid, attr, value), 'ok', `${attr} ${value}`);
  }
  t.equal(run(`cat ${M}/${A}/matrix ${M}/${B}/matrix`).stdout, '05.0004\n05.00ab\n06.0004\n06.00ab\n.0047\n');
}

t.test('the matrix parent, its type and the mdev attributes', async (t) => {
  t.equal(run(`readlink class/mdev_bus/matrix bus/matrix/devices/matrix ${M}/driver; cat ${TYPE}/name ${TYPE}/device_api ${TYPE}/available_instances; ls ${TYPE}`).stdout,
    '../../devices/vfio_ap/matrix\n../../../devices/vfio_ap/matrix\n../../../bus/matrix/drivers/vfio_ap\n' +
    'VFIO AP Passthrough Device\nvfio-ap\n65536\navailable_instances\ncreate\ndevice_api\ndevices\nname\n');
  t.equal(run(`${createAB} && cat ${TYPE}/available_instances`).stdout, '65534\n');
  t.equal(run(`cd ${M}/${A} && stat -c '%a %n' assign_adapter unassign_adapter assign_domain unassign_domain assign_control_domain unassign_control_domain control_domains matrix guest_matrix`).stdout,
    '200 assign_adapter\n200 unassign_adapter\n200 assign_domain\n200 unassign_domain\n200 assign_control_domain\n200 unassign_control_domain\n444 control_domains\n444 matrix\n444 guest_matrix\n');
  t.equal(run(`cat ${M}/${A}/matrix ${M}/${A}/guest_matrix ${M}/${A}/control_domains | wc -c`).stdout, '0\n', 'nothing assigned: empty files');
});

t.test('assignments: kstrtoul numbers, exact formats, idempotence', async (t) => {
  t.equal(run(createAB).code, 0);
  t.equal(put(A, 'assign_adapter', '5'), 'ok');
  t.equal(run(`cat ${M}/${A}/matrix`).stdout, '05.\n', 'adapters only');
  t.equal(put(A, 'assign_domain', '0xab'), 'ok');
  t.equal(put(A, 'assign_domain', '04'), 'ok', 'a leading 0 is octal');
  t.equal(put(A, 'assign_adapter', '+6'), 'ok');
  t.equal(put(A, 'assign_adapter', '6'), 'ok', 'assigning again succeeds');
  t.equal(run(`cat ${M}/${A}/matrix`).stdout, '05.0004\n05.00ab\n06.0004\n06.00ab\n');
  t.equal(run(`cat ${M}/${A}/guest_matrix`).stdout, '05.0004\n05.00ab\n06.0004\n06.00ab\n', 'every queue is bound to vfio_ap');
  t.equal(put(A, 'assign_control_domain', '171'), 'ok');
  t.equal(put(A, 'assign_control_domain', '0x2'), 'ok');
  t.equal(run(`cat ${M}/${A}/control_domains`).stdout, '0002\n00ab\n');
  t.equal(put(B, 'assign_domain', '0x47'), 'ok');
  t.equal(run(`cat ${M}/${B}/matrix`).stdout, '.0047\n', 'domains only');
});

t.test("the kernel's errors, and nothing changes", async (t) => {
  assignAB(t);
  const before = run(`cat ${M}/${A}/matrix; cat ${M}/${B}/matrix`).stdout;
  t.equal(put(A, 'assign_adapter', '256'), 'ENODEV', 'beyond the highest adapter id');
  t.equal(put(A, 'assign_domain', '0x100'), 'ENODEV');
  t.equal(put(A, 'unassign_control_domain', '999'), 'ENODEV');
  t.equal(put(A, 'assign_adapter', 'five'), 'EINVAL');
  t.equal(put(A, 'assign_adapter', '0x'), 'EINVAL');
  t.equal(put(A, 'assign_adapter', '99999999999999999999'), 'ERANGE', "kstrtoul's own overflow error");
  t.equal(put(B, 'assign_adapter', '7'), 'EADDRNOTAVAIL', '07.0047 belongs to the default zcrypt drivers');
  t.equal(put(B, 'assign_adapter', '5'), 'ok', '05.0047: adapter 05 is vfio_ap\'s');
  t.equal(put(B, 'assign_domain', '4'), 'EADDRINUSE', `05.0004 is assigned to ${A}`);
  t.equal(run(`cat ${M}/${B}/matrix`).stdout, '05.0047\n');
  t.equal(put(B, 'unassign_adapter', '5'), 'ok');
  t.equal(run(`cat ${M}/${A}/matrix; cat ${M}/${B}/matrix`).stdout, before);
  t.equal(put(A, 'unassign_domain', '0x47'), 'ok', 'unassigning what is not assigned');
  t.equal(run(`cat ${M}/${A}/matrix 2>&1 >/dev/null; echo x > ${M}/${A}/matrix`).code, 1, 'matrix is read-only');
});

t.test('removing an mdev frees its queues', async (t) => {
  assignAB(t);
  t.equal(put(B, 'assign_adapter', '6'), 'ok');
  t.equal(put(B, 'assign_domain', '4'), 'EADDRINUSE');
  t.equal(run(`echo 1 > ${M}/${A}/remove`).code, 0);
  t.equal(put(B, 'assign_domain', '4'), 'ok');
  t.equal(run(`cat ${M}/${B}/matrix`).stdout, '06.0004\n06.0047\n');
  t.equal(run(`cat ${M}/${B}/guest_matrix`).stdout, '06.0004\n06.0047\n');
});

t.test('mdevctl types, and mdevctl start applying attrs in order', async (t) => {
  const script = `mdevctl types
cat > /tmp/ap-$$.json <<'J'
{"mdev_type":"vfio_ap-passthrough","start":"manual","attrs":[{"assign_adapter":"5"},{"assign_domain":"0xab"},{"assign_control_domain":"0xab"},{"assign_domain":"4"}]}
J
mdevctl start -u ${A} -p matrix --jsonfile /tmp/ap-$$.json; echo rc=$?
cat /sys/devices/vfio_ap/matrix/${A}/matrix /sys/devices/vfio_ap/matrix/${A}/control_domains
cat > /tmp/ap-$$.json <<'J'
{"mdev_type":"vfio_ap-passthrough","start":"manual","attrs":[{"assign_domain":"4"},{"assign_adapter":"5"}]}
J
mdevctl start -u ${B} -p matrix --jsonfile /tmp/ap-$$.json 2>&1 | tail -1; rm -f /tmp/ap-$$.json
mdevctl list`;
  const r = execWith('ap', 'bash', '-c', script);
  t.equal(r.stdout,
    'matrix\n  vfio_ap-passthrough\n    Available instances: 65536\n    Device API: vfio-ap\n    Name: VFIO AP Passthrough Device\n\n' +
    'rc=0\n05.0004\n05.00ab\n00ab\n' +
    '    Address already in use (os error 98)\n' +
    `${A} matrix vfio_ap-passthrough manual\n\n`, r.stderr);
});

t.test('the newest ABI as a JSON profile: ap_config (all or nothing) and the matrix device\'s features', async (t) => {
  const p = AP.parents[0]!;
  const newest = {
    parents: [{ ...p, bus: { ...p.bus!, attrs: { features: 'guest_matrix hotplug ap_config\n' } }, deviceAttrs: { ...p.deviceAttrs, ap_config: { kind: 'ap-config' } } }],
  };
  const n = await startDaemon({ profile: newest });
  t.teardown(() => n.stop());
  const zero = '0x' + '0'.repeat(64);
  const mask = (...ids: number[]) => '0x' + Array.from({ length: 64 }, (_, i) => ids.filter((id) => id >> 2 === i).reduce((b, id) => b | (8 >> (id & 3)), 0).toString(16)).join('');
  t.equal(sh(n.dir, `cat bus/matrix/devices/matrix/features; echo ${A} > ${TYPE}/create; stat -c %a ${M}/${A}/ap_config; cat ${M}/${A}/ap_config`).stdout,
    `guest_matrix hotplug ap_config\n644\n${zero},${zero},${zero}\n`);
  // s390-tools ap-check writes "%s,%s,%s\n".
  t.equal(sh(n.dir, `echo ${mask(5, 6)},${mask(4)},${mask(4)} > ${M}/${A}/ap_config && cat ${M}/${A}/matrix ${M}/${A}/control_domains`).stdout,
    '05.0004\n06.0004\n0004\n');
  t.equal(writeErrno(n.dir, `${M}/${A}/ap_config`, `b"${mask(7)},${mask(0x47)},${zero}\\n"`), 'EADDRNOTAVAIL');
  t.equal(writeErrno(n.dir, `${M}/${A}/ap_config`, `b"${mask(5)},${mask(4)}"`), 'EINVAL', 'two masks');
  t.equal(sh(n.dir, `cat ${M}/${A}/matrix`).stdout, '05.0004\n06.0004\n', 'a refused ap_config changes nothing');
});

t.test('the AP bus: masks, cards, queues bound as the masks say, EBUSY for an assigned APQN', async (t) => {
  const r = (s: string) => sh(d.dir, s).stdout;
  const full = (...cleared: number[]) => {
    let m = '0x';
    for (let i = 0; i < 256; i += 4) m += [0, 1, 2, 3].reduce((b, n) => b | (cleared.includes(i + n) ? 0 : 8 >> n), 0).toString(16);
    return m;
  };
  t.equal(r('cat bus/ap/apmask bus/ap/aqmask bus/ap/ap_max_adapter_id bus/ap/ap_max_domain_id'), `${full(5, 6)}\n${full(4, 0xab)}\n255\n255\n`);
  t.equal(r('ls devices/ap/card05; cat devices/ap/card05/hwtype devices/ap/card05/uevent'),
    '05.0004\n05.0047\n05.00ab\ndriver\nhwtype\nonline\npower\nsubsystem\ntype\nuevent\n13\nDRIVER=cex4card\nDEV_TYPE=000D\nMODALIAS=ap:t0D\nMODE=cca\n');
  t.equal(r('cd bus/ap/devices && for q in 05.0004 06.0047 07.0047 07.00ab; do echo "$q $(basename $(readlink $q/driver))"; done'),
    '05.0004 vfio_ap\n06.0047 vfio_ap\n07.0047 cex4queue\n07.00ab vfio_ap\n', 'a queue is the default driver\'s only when apmask and aqmask both claim it');
  t.equal(r(`echo ${A} > ${TYPE}/create && echo 5 > ${M}/${A}/assign_adapter && echo 4 > ${M}/${A}/assign_domain && cat devices/ap/card05/05.0004/status devices/ap/card05/05.00ab/status`),
    'assigned\nunassigned\n');
  t.equal(writeErrno(d.dir, 'bus/ap/apmask', 'b"+5\\n"'), 'ok', '05.0004 stays vfio_ap\'s: aqmask does not claim domain 4');
  t.equal(writeErrno(d.dir, 'bus/ap/aqmask', 'b"+4\\n"'), 'EBUSY', `05.0004 is assigned to ${A}`);
  t.equal(r('cat bus/ap/aqmask'), `${full(4, 0xab)}\n`, 'the refused write changed nothing');
  t.equal(writeErrno(d.dir, 'bus/ap/apmask', 'b"-5,+6\\n"'), 'ok');
  t.equal(writeErrno(d.dir, 'bus/ap/aqmask', 'b"+4"'), 'ok', 'nothing of 06.0004 is assigned');
  t.equal(r('basename $(readlink bus/ap/devices/06.0004/driver); test -e devices/ap/card06/06.0004/status || echo no-status; basename $(readlink bus/ap/devices/05.0004/driver)'),
    'cex4queue\nno-status\nvfio_ap\n', 'the queues were bound again');
  t.equal(writeErrno(d.dir, 'bus/ap/apmask', 'b"+256"'), 'EINVAL');
  t.equal(writeErrno(d.dir, 'bus/ap/apmask', `b"0x${'f'.repeat(65)}"`), 'EINVAL', 'more than 256 bits');
  t.equal(writeErrno(d.dir, 'bus/ap/apmask', 'b"0x8"'), 'ok', 'an absolute mask: only adapter 0');
  t.equal(r('basename $(readlink bus/ap/devices/07.0047/driver)'), 'vfio_ap\n');
});
