import { endianness } from 'node:os';
import t from 'tap';
import { kernelRelayMessage } from '../../src/events/udev';

// The kernel-group copy of a uevent as the request the kernel's uevent socket relays
// (uevent_net_rcv, lib/kobject_uevent.c): a struct nlmsghdr, then what kobject_uevent_env builds
// without SEQNUM (the kernel appends its own).
t.test('kernelRelayMessage: nlmsghdr (length, a request with an ack) and ACTION@DEVPATH with the variables in order, no SEQNUM', async (t) => {
  const m = kernelRelayMessage({ ACTION: 'bind', DEVPATH: '/devices/virtual/mtty/mtty/u', SUBSYSTEM: 'mdev', DRIVER: 'mtty', SEQNUM: '4' });
  const le = endianness() === 'LE';
  const u32 = (at: number) => (le ? m.readUInt32LE(at) : m.readUInt32BE(at));
  const u16 = (at: number) => (le ? m.readUInt16LE(at) : m.readUInt16BE(at));
  t.equal(u32(0), m.length, 'nlmsg_len covers the whole message');
  t.equal(u16(4), 0x10, 'nlmsg_type NLMSG_MIN_TYPE: the kernel skips control messages below it');
  t.equal(u16(6), 0x1 | 0x4, 'NLM_F_REQUEST | NLM_F_ACK');
  t.equal(u32(8), 0);
  t.equal(u32(12), 0);
  t.equal(m.subarray(16).toString('utf8'), 'bind@/devices/virtual/mtty/mtty/u\0ACTION=bind\0DEVPATH=/devices/virtual/mtty/mtty/u\0SUBSYSTEM=mdev\0DRIVER=mtty\0');
});
