// Every error code and datapath reason is documented in docs/errors.md, and the source uses
// no error code that src/errors.ts does not define.

import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, TesseraError } from '../../src/errors.js';

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
