import { describe, expect, it } from 'vitest';
import { cidrContains, cidrHas, cidrOverlaps, parseAddressInto, parseCidr, v4Mapped, type Cidr } from '../../../src/policy/cidr.js';

function c(text: string): Cidr {
  const r = parseCidr(text);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

describe('addresses', () => {
  it.each([
    ['0.0.0.0', 4, [0]],
    ['255.255.255.255', 4, [0xffffffff]],
    ['10.213.1.2', 4, [0x0ad50102]],
    ['::', 6, [0, 0, 0, 0]],
    ['::1', 6, [0, 0, 0, 1]],
    ['1::', 6, [0x10000, 0, 0, 0]],
    ['2001:db8::1', 6, [0x20010db8, 0, 0, 1]],
    ['2001:DB8:0:0:0:0:0:1', 6, [0x20010db8, 0, 0, 1]],
    ['1:2:3:4:5:6:7:8', 6, [0x10002, 0x30004, 0x50006, 0x70008]],
    ['1:2:3:4:5:6:7::', 6, [0x10002, 0x30004, 0x50006, 0x70000]],
    ['::2:3:4:5:6:7:8', 6, [0x2, 0x30004, 0x50006, 0x70008]],
    ['::ffff:10.0.0.1', 6, [0, 0, 0xffff, 0x0a000001]],
    ['64:ff9b::192.0.2.33', 6, [0x0064ff9b, 0, 0, 0xc0000221]],
    ['1:2:3:4:5:6:1.2.3.4', 6, [0x10002, 0x30004, 0x50006, 0x01020304]],
  ])('%s', (text, family, words) => {
    const out = new Uint32Array(4);
    expect(parseAddressInto(text, out)).toBe(family);
    expect([...out.slice(0, words.length)]).toEqual(words);
  });

  it.each(['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3', ':1::', '1::1:', 'fe80::1%eth0'])(
    'refuses %j',
    (text) => {
      expect(parseAddressInto(text, new Uint32Array(4))).toBe(0);
    },
  );

  it('recognizes IPv4-mapped IPv6', () => {
    const out = new Uint32Array(4);
    parseAddressInto('::ffff:1.2.3.4', out);
    expect(v4Mapped(out)).toBe(true);
    parseAddressInto('::1.2.3.4', out);
    expect(v4Mapped(out)).toBe(false);
  });
});

describe('CIDR blocks', () => {
  it('canonical text, masking and host bits', () => {
    expect(c('10.1.2.3/8')).toMatchObject({ text: '10.0.0.0/8', hostBits: true, prefix: 8 });
    expect(c('10.0.0.0/8')).toMatchObject({ text: '10.0.0.0/8', hostBits: false });
    expect(c('10.0.0.1').text).toBe('10.0.0.1/32');
    expect(c('0.0.0.0/0').text).toBe('0.0.0.0/0');
    expect(c('2001:0DB8:0000::/32').text).toBe('2001:db8::/32');
    expect(c('2001:db8:0:0:1:0:0:1').text).toBe('2001:db8::1:0:0:1/128');
    expect(c('::/0').text).toBe('::/0');
    expect(c('fe80::1/10')).toMatchObject({ text: 'fe80::/10', hostBits: true });
    expect(c('1:0:0:1:0:0:0:1').text).toBe('1:0:0:1::1/128');
  });

  it('membership at the edges of v4 and v6 blocks, including non-octet prefixes', () => {
    const has = (block: string, addr: string): boolean => {
      const out = new Uint32Array(4);
      const f = parseAddressInto(addr, out);
      return f !== 0 && cidrHas(c(block), f, out);
    };
    expect(has('10.0.0.0/15', '10.1.255.255')).toBe(true);
    expect(has('10.0.0.0/15', '10.2.0.0')).toBe(false);
    expect(has('0.0.0.0/0', '255.255.255.255')).toBe(true);
    expect(has('0.0.0.0/0', '::')).toBe(false);
    expect(has('::/0', '0.0.0.0')).toBe(false);
    expect(has('2001:db8::/31', '2001:db9:ffff::')).toBe(true);
    expect(has('2001:db8::/31', '2001:dba::')).toBe(false);
    expect(has('::/1', '7fff::')).toBe(true);
    expect(has('::/1', '8000::')).toBe(false);
    expect(has('2001:db8::/97', '2001:db8::7fff:ffff')).toBe(true);
    expect(has('2001:db8::/97', '2001:db8::8000:0')).toBe(false);
    expect(has('1.2.3.4/32', '1.2.3.4')).toBe(true);
    expect(has('1.2.3.4/32', '1.2.3.5')).toBe(false);
  });

  it('containment and overlap', () => {
    expect(cidrContains(c('10.0.0.0/8'), c('10.1.0.0/16'))).toBe(true);
    expect(cidrContains(c('10.1.0.0/16'), c('10.0.0.0/8'))).toBe(false);
    expect(cidrContains(c('10.0.0.0/8'), c('10.0.0.0/8'))).toBe(true);
    expect(cidrOverlaps(c('10.1.0.0/16'), c('10.0.0.0/8'))).toBe(true);
    expect(cidrOverlaps(c('10.0.0.0/8'), c('11.0.0.0/8'))).toBe(false);
    expect(cidrOverlaps(c('0.0.0.0/0'), c('::/0'))).toBe(false);
    expect(cidrContains(c('2001:db8::/32'), c('2001:db8:ffff::/48'))).toBe(true);
  });
});
