import t from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import { kstrtoul, parseCreateUuid } from '../../src/base/parse';

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const errnoOf = (fn: () => unknown): number | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof MdevError ? e.errno : -1;
  }
};

t.test('create accepts 36 or 37 bytes, either case, byte 37 unchecked', async (t) => {
  t.equal(parseCreateUuid(Buffer.from(U)), U);
  t.equal(parseCreateUuid(Buffer.from(U + '\n')), U);
  t.equal(parseCreateUuid(Buffer.from(U + 'x')), U, 'the 37th byte is not looked at');
  t.equal(parseCreateUuid(Buffer.from(U.toUpperCase() + '\n')), U, 'upper case names the same device');
  t.equal(parseCreateUuid(Buffer.from('00000000-0000-0000-0000-000000000000')), '00000000-0000-0000-0000-000000000000');
});

t.test('create rejects everything else with EINVAL', async (t) => {
  for (const bad of [
    '',
    '\n',
    U.slice(0, 35),
    U + '\n\n',
    U + '\r\n',
    ' ' + U,
    '{' + U.slice(0, 34) + '}',
    U.replace(/-/g, '_'),
    U.replace(/-/g, ''),
    U.slice(0, 35) + 'g',
    '83b8f4f2-509f-382f-3c1e-e6bfe0fa10\n',
  ]) {
    t.equal(errnoOf(() => parseCreateUuid(Buffer.from(bad))), Errno.EINVAL, JSON.stringify(bad));
  }
  const withNul = Buffer.from(U);
  withNul[5] = 0;
  t.equal(errnoOf(() => parseCreateUuid(withNul)), Errno.EINVAL, 'NUL inside the UUID');
});

t.test('remove parses like kstrtoul(buf, 0)', async (t) => {
  const ok: [string, bigint][] = [
    ['0', 0n],
    ['0\n', 0n],
    ['00', 0n],
    ['1', 1n],
    ['1\n', 1n],
    ['+1', 1n],
    ['0x1', 1n],
    ['0X1f', 31n],
    ['010', 8n],
    ['2', 2n],
    ['18446744073709551615', 18446744073709551615n],
  ];
  for (const [s, v] of ok) t.equal(kstrtoul(Buffer.from(s)), v, JSON.stringify(s));
  t.equal(kstrtoul(Buffer.from('1\0junk')), 1n, 'the store sees a C string');
  for (const bad of ['', '\n', ' 1', '1 ', '-1', 'abc', '08', '0x', '1\n\n', '++1', '0xg']) {
    t.equal(errnoOf(() => kstrtoul(Buffer.from(bad))), Errno.EINVAL, JSON.stringify(bad));
  }
  for (const big of ['18446744073709551616', '99999999999999999999999', '0x10000000000000000']) {
    t.equal(errnoOf(() => kstrtoul(Buffer.from(big))), Errno.EINVAL, `overflow ${big}`);
  }
});
