// The strike register's bound is what docs/protocol.md says it is: proofs are refused
// ('register-full') only when the table is nearly full, not when one stripe of it is. Each
// proof has two candidate stripes (seeded) and goes to the one with more room; with one
// stripe per proof the first refusal came at about 60 % of capacity (balls into bins).
// Counts, not times: random proofs struck at one instant until the first refusal.

import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRegisterBuffer } from '../../../../src/datapath/handshake/v2/index.js';
import { StrikeRegister } from '../../../../src/datapath/handshake/v2/register.js';

/** Random 16-byte proofs struck at time 0 until the first 'full': how many were recorded. */
function fillUntilFull(r: StrikeRegister): number {
  const batch = new Uint8Array(16 * 1024);
  let n = 0;
  for (let round = 0; round < 4 * Math.ceil(r.capacity / 1024) + 4; round++) {
    randomFillSync(batch);
    for (let i = 0; i < 1024; i++) {
      const a = r.strikeAt(batch, i * 16, n, 0);
      if (a === 'full') return n;
      expect(a).toBe('new');
      n++;
    }
  }
  throw new Error('never full');
}

describe('strike register: filling', () => {
  it('the first refusal comes above 90 % of capacity (default size and a small one), and none before', () => {
    for (const entries of [4_096, 131_072]) {
      const r = new StrikeRegister(entries, 8_000);
      const n = fillUntilFull(r);
      expect(n / r.capacity).toBeGreaterThan(0.9);
      expect(n).toBeLessThanOrEqual(r.capacity);
      expect(r.size).toBe(n);
      expect(r.full).toBe(1);
    }
  });

  it('every recorded proof is still found (same from its tuple, seen from another) after the table filled', () => {
    const r = new StrikeRegister(4_096, 8_000);
    const proofs = new Uint8Array(16 * 3_500);
    randomFillSync(proofs);
    for (let i = 0; i < 3_500; i++) expect(r.strikeAt(proofs, i * 16, i, 0)).toBe('new');
    let same = 0;
    let seen = 0;
    for (let i = 0; i < 3_500; i++) {
      if (r.strikeAt(proofs, i * 16, i, 1) === 'same') same++;
      if (r.strikeAt(proofs, i * 16, i + 1, 2) === 'seen') seen++;
    }
    expect(same).toBe(3_500);
    expect(seen).toBe(3_500);
  });

  it('leaves every stripe lock free, also after refusals', () => {
    const buffer = createRegisterBuffer(1_024);
    const r = new StrikeRegister(1_024, 8_000, { buffer, holder: 5 });
    fillUntilFull(r);
    const m = new Uint8Array(16 * 64);
    randomFillSync(m);
    let full = 0;
    for (let i = 0; i < 64; i++) if (r.strikeAt(m, i * 16, i, 0) === 'full') full++;
    expect(full).toBeGreaterThan(0);
    const head = new Int32Array(buffer, 0, 4);
    const locks = new Int32Array(buffer, 16, head[1]!);
    expect(locks.every((x) => x === 0)).toBe(true);
  });

  it('each buffer has its own random stripe seed (a client cannot aim its proofs at chosen stripes)', () => {
    const seeds = new Set<number>();
    for (let i = 0; i < 8; i++) seeds.add(new Int32Array(createRegisterBuffer(64), 0, 4)[3]!);
    expect(seeds.size).toBe(8);
  });
});
