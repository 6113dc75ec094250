import { describe, expect, it } from 'vitest';
import { TesseraError } from '../../../src/errors.js';
import {
  canonicalLabels,
  isSystemKey,
  labelsEqual,
  parseLabel,
  parseUserLabel,
  userLabels,
} from '../../../src/identity/index.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TesseraError);
    return (err as TesseraError).code;
  }
  return undefined;
}

describe('parseLabel', () => {
  it('splits at the first "=" and allows "=" and an empty value', () => {
    expect(parseLabel('app=nginx')).toEqual({ key: 'app', value: 'nginx' });
    expect(parseLabel('cmd=a=b')).toEqual({ key: 'cmd', value: 'a=b' });
    expect(parseLabel('flag=')).toEqual({ key: 'flag', value: '' });
    expect(parseLabel('k8s.io/name-x_y=v w')).toEqual({ key: 'k8s.io/name-x_y', value: 'v w' });
    expect(parseLabel('k=héllo ✓')).toEqual({ key: 'k', value: 'héllo ✓' });
  });

  const bad: [string, string][] = [
    ['no equals sign', 'app'],
    ['empty key', '=v'],
    ['key 64 characters', `${'a'.repeat(64)}=v`],
    ['key starting with "."', '.a=v'],
    ['key starting with "-"', '-a=v'],
    ['key starting with "_"', '_a=v'],
    ['key starting with "/"', '/a=v'],
    ['key with a space', 'a b=v'],
    ['key with ":"', 'a:b=v'],
    ['key with a non-ASCII letter', 'é=v'],
    ['value with a newline', 'a=x\ny'],
    ['value with NUL', 'a=x\0'],
    ['value with DEL', 'a=x\x7f'],
    ['value with a C1 control', 'a=x\u0085'],
    ['value with a lone surrogate', 'a=x\ud800'],
    ['value of 256 bytes', `a=${'v'.repeat(256)}`],
    ['value of 128 two-byte characters', `a=${'é'.repeat(128)}`],
    ['"@" alone as key', '@=v'],
    ['system key with a space', '@sys: image=v'],
  ];
  for (const [why, text] of bad) {
    it(`refuses ${why} with TESSERA_ERR_INVALID_LABEL`, () => {
      expect(code(() => parseLabel(text))).toBe('TESSERA_ERR_INVALID_LABEL');
    });
  }

  it('accepts the limits exactly', () => {
    expect(parseLabel(`${'a'.repeat(63)}=${'v'.repeat(255)}`).key.length).toBe(63);
    expect(parseLabel(`a=${'é'.repeat(127)}x`).value.length).toBe(128); // 255 bytes
  });

  it('accepts system keys, which parseUserLabel refuses', () => {
    expect(parseLabel('@sys:image=busybox')).toEqual({ key: '@sys:image', value: 'busybox' });
    expect(isSystemKey('@sys:image')).toBe(true);
    expect(isSystemKey('app')).toBe(false);
    expect(code(() => parseUserLabel('@sys:image=busybox'))).toBe('TESSERA_ERR_INVALID_LABEL');
    expect(parseUserLabel('app=x')).toEqual({ key: 'app', value: 'x' });
    expect(code(() => parseUserLabel('app'))).toBe('TESSERA_ERR_INVALID_LABEL');
  });

  it('names the problem in the message', () => {
    expect(() => parseLabel('app')).toThrow(/no '='/);
    expect(() => parseLabel(`${'a'.repeat(64)}=v`)).toThrow(/at most 63/);
    expect(() => parseUserLabel('@sys:x=1')).toThrow(/reserved/);
  });
});

describe('canonicalLabels', () => {
  it('sorts by key, deduplicates, freezes', () => {
    const c = canonicalLabels(['tier=web', 'app=nginx', 'env=prod', 'app=nginx', '@sys:image=busybox']);
    expect(c).toEqual(['@sys:image=busybox', 'app=nginx', 'env=prod', 'tier=web']);
    expect(Object.isFrozen(c)).toBe(true);
  });
  it('accepts {key, value} objects and mixes', () => {
    expect(canonicalLabels([{ key: 'b', value: '1' }, 'a=2'])).toEqual(['a=2', 'b=1']);
  });
  it('refuses a key with two values', () => {
    expect(code(() => canonicalLabels(['app=a', 'app=b']))).toBe('TESSERA_ERR_INVALID_LABEL');
    expect(() => canonicalLabels(['app=a', 'app=b'])).toThrow(/two values/);
  });
  it('refuses invalid entries, including objects whose key holds "="', () => {
    expect(code(() => canonicalLabels(['ok=1', 'bad']))).toBe('TESSERA_ERR_INVALID_LABEL');
    expect(code(() => canonicalLabels([{ key: 'a=b', value: 'c' }]))).toBe('TESSERA_ERR_INVALID_LABEL');
    expect(code(() => canonicalLabels([{ key: 'a', value: 1 } as never]))).toBe('TESSERA_ERR_INVALID_LABEL');
  });
  it('sorts "a" before "a.b" before "b" (code unit order on keys, not on the k=v text)', () => {
    // '=' (0x3d) sorts after '.' (0x2e): sorting whole strings would put "a.b=1" first.
    expect(canonicalLabels(['b=1', 'a.b=1', 'a=1'])).toEqual(['a=1', 'a.b=1', 'b=1']);
  });
  it('the empty set is canonical', () => {
    expect(canonicalLabels([])).toEqual([]);
  });
});

describe('userLabels and labelsEqual', () => {
  it('userLabels drops system labels', () => {
    expect(userLabels(canonicalLabels(['@sys:image=x', 'app=a']))).toEqual(['app=a']);
  });
  it('labelsEqual compares sets, in any order, and invalid sets equal nothing', () => {
    expect(labelsEqual(['a=1', 'b=2'], ['a=1', 'b=2'])).toBe(true);
    expect(labelsEqual(['b=2', 'a=1'], ['a=1', 'b=2'])).toBe(true);
    expect(labelsEqual(['a=1'], ['a=1', 'b=2'])).toBe(false);
    expect(labelsEqual(['a=1', 'b=2'], ['a=1', 'b=3'])).toBe(false);
    expect(labelsEqual(['a=1', 'a=1'], ['a=1'])).toBe(true);
    expect(labelsEqual(['bad'], ['a=1'])).toBe(false);
    expect(labelsEqual([], [])).toBe(true);
  });
});
