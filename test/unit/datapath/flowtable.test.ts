// FlowTable (src/datapath/handshake/flowtable.ts): the handshake's per-connection tables keyed
// by int32 words. Exact keys (a key differing in any word is another entry), bounded like Lru
// (never more than the bound; a used entry survives), value objects handed back for reuse only
// when their generation is dropped, tombstones that never break a probe chain.

import { describe, expect, it } from 'vitest';
import { FlowTable, KEY_WORDS, keyPacket, keyTuple } from '../../../src/datapath/handshake/flowtable.js';
import type { TupleView } from '../../../src/datapath/handshake/v2/index.js';

function setKey(t: { key: Int32Array }, n: number, word = 10): void {
  t.key.fill(0);
  t.key[0] = 4;
  t.key[word] = n;
}

describe('FlowTable', () => {
  it('gets what was set under the same words, and nothing under a key differing in any one word', () => {
    const t = new FlowTable<number>(1_000);
    for (let w = 0; w < KEY_WORDS; w++) {
      t.key.fill(7);
      t.key[w] = 1;
      t.set(w);
    }
    expect(t.size).toBe(KEY_WORDS);
    for (let w = 0; w < KEY_WORDS; w++) {
      t.key.fill(7);
      t.key[w] = 1;
      expect(t.get()).toBe(w);
    }
    t.key.fill(7);
    expect(t.get()).toBeUndefined();
    t.key[3] = 1;
    expect(t.delete()).toBe(true);
    expect(t.get()).toBeUndefined();
    expect(t.delete()).toBe(false);
    expect(t.size).toBe(KEY_WORDS - 1);
  });

  it('never holds more than its bound; entries used recently survive; dropped values are recycled once', () => {
    const recycled: number[] = [];
    const t = new FlowTable<{ n: number }>(1_000, (v) => recycled.push(v.n));
    for (let i = 0; i < 20_000; i++) {
      setKey(t, i);
      t.set({ n: i });
      // Entry 0 is used all along: it must survive.
      setKey(t, 0);
      expect(t.get()?.n).toBe(0);
      expect(t.size).toBeLessThanOrEqual(1_000);
    }
    expect(new Set(recycled).size).toBe(recycled.length);
    expect(recycled.includes(0)).toBe(false);
    // Everything set is either still in the table or was recycled.
    let held = 0;
    for (let i = 0; i < 20_000; i++) {
      setKey(t, i);
      if (t.peek() !== undefined) held++;
    }
    expect(held + recycled.length).toBe(20_000);
    expect(held).toBe(t.size);
  });

  it('deletes leave tombstones that do not hide entries further along a probe chain; the table stays bounded', () => {
    const t = new FlowTable<number>(64);
    for (let round = 0; round < 200; round++) {
      for (let i = 0; i < 20; i++) {
        setKey(t, round * 100 + i);
        t.set(i);
      }
      for (let i = 0; i < 20; i += 2) {
        setKey(t, round * 100 + i);
        expect(t.delete()).toBe(true);
      }
      for (let i = 1; i < 20; i += 2) {
        setKey(t, round * 100 + i);
        expect(t.peek()).toBe(i);
      }
      expect(t.size).toBeLessThanOrEqual(64);
    }
  });

  it('keys a tuple by role and a packet by direction, IPv4 and IPv6 apart', () => {
    const buf = Uint8Array.of(10, 0, 0, 1, 10, 0, 0, 2, ...new Array<number>(32).fill(0));
    const t4: TupleView = { buf, addrLength: 4, clientAddrOffset: 0, serverAddrOffset: 4, clientPort: 40000, serverPort: 443 };
    const a = new Int32Array(KEY_WORDS);
    const b = new Int32Array(KEY_WORDS);
    keyTuple(a, t4, 0xdeadbeef);
    keyPacket(b, buf, 0, 4, 4, 40000, 443, 0xdeadbeef);
    expect([...a]).toEqual([...b]);
    keyPacket(b, buf, 4, 0, 4, 443, 40000, 0xdeadbeef);
    expect([...a]).not.toEqual([...b]);
    const t6: TupleView = { ...t4, addrLength: 16, clientAddrOffset: 8, serverAddrOffset: 24 };
    keyTuple(b, t6, 0xdeadbeef);
    expect(b[0]).toBe(16);
    expect([...a]).not.toEqual([...b]);
  });
});
