import { Errno, fail } from '../base/errno';

const DASH_POSITIONS = new Set([8, 13, 18, 23]);

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/**
 * create_store + guid_parse: one write of 36 or 37 bytes whose first 36 are a UUID in
 * either case; byte 37 is not looked at. Returns the canonical lower-case name, which is
 * a bijection of the 16 binary bytes and so serves as the registry key.
 */
export function parseCreateUuid(buf: Uint8Array): string {
  if (buf.length < 36 || buf.length > 37) fail(Errno.EINVAL, `create: ${buf.length} bytes, want 36 or 37`);
  for (let i = 0; i < 36; i++) {
    const c = buf[i]!;
    if (DASH_POSITIONS.has(i) ? c !== 0x2d : !isHex(c)) fail(Errno.EINVAL, 'create: not a UUID');
  }
  return Buffer.from(buf.subarray(0, 36)).toString('latin1').toLowerCase();
}

/** True when s is a canonical UUID (either case), as guid_parse accepts it. */
export function isUuidText(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (DASH_POSITIONS.has(i) ? c !== 0x2d : !isHex(c)) return false;
  }
  return true;
}

const ULONG_MAX = (1n << 64n) - 1n;

/**
 * kstrtoul(buf, 0): optional '+', base from prefix (0x hex, 0 octal, else decimal),
 * one optional trailing newline, nothing else. The store sees the buffer as a C
 * string, so it ends at the first NUL. Overflow is EINVAL by default: remove_store maps every
 * kstrtoul error to EINVAL (test/conformance/expected/remove-errors.txt); stores that return
 * kstrtoul's own error (vfio-ap's assign_*) pass ERANGE as `overflowErrno`.
 */
export function kstrtoul(buf: Uint8Array, overflowErrno: number = Errno.EINVAL): bigint {
  const nul = buf.indexOf(0);
  let s = Buffer.from(nul >= 0 ? buf.subarray(0, nul) : buf).toString('latin1');
  if (s.startsWith('+')) s = s.slice(1);
  let base = 10;
  if (s[0] === '0') {
    if ((s[1] === 'x' || s[1] === 'X') && s.length > 2 && isHex(s.charCodeAt(2))) {
      base = 16;
      s = s.slice(2);
    } else {
      base = 8;
    }
  }
  let value = 0n;
  let digits = 0;
  let overflow = false;
  for (; digits < s.length; digits++) {
    const d = parseInt(s[digits]!, 16);
    if (Number.isNaN(d) || d >= base) break;
    value = value * BigInt(base) + BigInt(d);
    if (value > ULONG_MAX) overflow = true;
  }
  if (digits === 0) fail(Errno.EINVAL, 'not a number');
  let rest = s.slice(digits);
  if (rest.startsWith('\n')) rest = rest.slice(1);
  if (rest.length > 0) fail(Errno.EINVAL, 'trailing characters');
  if (overflow) fail(overflowErrno, 'number out of range');
  return value;
}

/** sysfs_streq: equal up to one trailing newline on either side. */
export function sysfsStreq(a: string, b: string): boolean {
  const strip = (x: string) => (x.endsWith('\n') ? x.slice(0, -1) : x);
  return strip(a) === strip(b);
}
