// Every error code and datapath reason is documented in docs/errors.md, and the source uses
// no error code that src/errors.ts does not define.

import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, TesseraError, asTesseraError, exitCodeOf, httpStatusOf, isErrorCode, type ErrorCode } from '../../src/errors.js';

const root = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|cjs|c)$/.test(n) ? [p] : [];
  });
}

describe('error codes', () => {
  it('documents every code of src/errors.ts in docs/errors.md', () => {
    const missing = Object.keys(ErrorCodes).filter((c) => !doc.includes('`' + c + '`'));
    expect(missing).toEqual([]);
  });

  it('lists each code in docs/errors.md with the exit and HTTP status of the table', () => {
    const rows = new Map([...doc.matchAll(/^\| `(TESSERA_ERR_[A-Z_]+)` \| (\d+) \| (\d+) \|/gm)].map((m) => [m[1]!, [Number(m[2]), Number(m[3])]]));
    const codes = Object.keys(ErrorCodes) as ErrorCode[];
    expect(codes.map((c) => [c, rows.get(c)])).toEqual(codes.map((c) => [c, [exitCodeOf(c), httpStatusOf(c)]]));
    expect([...rows.keys()].filter((c) => !isErrorCode(c))).toEqual([]);
  });

  it('gives usage errors exit 2, internal errors 70, the rest 1; client mistakes 4xx, the daemon\'s own failures 5xx', () => {
    expect(exitCodeOf('TESSERA_ERR_INVALID_ARGUMENT')).toBe(2);
    expect(exitCodeOf('TESSERA_ERR_INTERNAL')).toBe(70);
    expect(exitCodeOf('TESSERA_ERR_RULES')).toBe(1);
    for (const c of ['TESSERA_ERR_INVALID_LABEL', 'TESSERA_ERR_API', 'TESSERA_ERR_PU', 'TESSERA_ERR_TOKEN'] as const) expect(httpStatusOf(c), c).toBe(400);
    for (const c of ['TESSERA_ERR_RULES', 'TESSERA_ERR_CGROUP', 'TESSERA_ERR_COMMAND', 'TESSERA_ERR_INTERNAL'] as const) expect(httpStatusOf(c), c).toBe(500);
    for (const c of Object.keys(ErrorCodes) as ErrorCode[]) {
      expect([1, 2, 70], c).toContain(exitCodeOf(c));
      expect(httpStatusOf(c), c).toBeGreaterThanOrEqual(400);
      expect(httpStatusOf(c), c).toBeLessThan(600);
    }
    expect(isErrorCode('toString')).toBe(false);
  });

  it('turns any thrown value into one of ours: filesystem errors name path and errno, the rest is internal', () => {
    const fsErr = Object.assign(new Error("ENOTDIR: not a directory, mkdir '/dev/null/x'"), { code: 'ENOTDIR', syscall: 'mkdir', path: '/dev/null/x', errno: -20 });
    const e = asTesseraError(fsErr);
    expect([e.code, e.message, e.cause]).toEqual(['TESSERA_ERR_FILESYSTEM', 'cannot mkdir /dev/null/x: a part of the path is not a directory (ENOTDIR)', fsErr]);
    expect(asTesseraError(new TypeError('x is undefined')).code).toBe('TESSERA_ERR_INTERNAL');
    expect(asTesseraError('a string').message).toBe('a string');
    const ours = new TesseraError('TESSERA_ERR_PU', 'no PU');
    expect(asTesseraError(ours)).toBe(ours);
  });

  it('uses only defined codes anywhere in src/ and native/', () => {
    const used = new Set<string>();
    for (const f of [...files(join(root, 'src')), ...files(join(root, 'native', 'src')), join(root, 'native', 'index.cjs')]) {
      for (const m of readFileSync(f, 'utf8').matchAll(/TESSERA_ERR_[A-Z_]+/g)) used.add(m[0]);
    }
    expect([...used].filter((c) => !(c in ErrorCodes))).toEqual([]);
  });

  it('documents every datapath reason code', () => {
    const src = readFileSync(join(root, 'src', 'datapath', 'handshake', 'types.ts'), 'utf8');
    const union = /export type Reason =([^;]+);/.exec(src)![1]!;
    const reasons = [...union.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
    expect(reasons.length).toBeGreaterThan(10);
    expect(reasons.filter((r) => !doc.includes('`' + r + '`'))).toEqual([]);
  });

  it('gives errors a class, a stable code and a cause', () => {
    const cause = new Error('root');
    const e = new TesseraError('TESSERA_ERR_RULES', 'x', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('TESSERA_ERR_RULES');
    expect(e.cause).toBe(cause);
  });
});
