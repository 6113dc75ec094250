// The strike register shared by a host's workers (register.ts). The proofs leave the tuple
// out (NAT), so a proof replayed from another address passes its MAC; the register, keyed by
// the proof and holding the tuple's hash, refuses it, whichever worker it reaches.

import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createRegisterBuffer, releaseHeldBy } from '../../../../src/datapath/handshake/v2/index.js';
import { StrikeRegister } from '../../../../src/datapath/handshake/v2/register.js';
import { ATTACKER_ADDR, T0, connect, exchange, last, makeWorld, tuple, type World } from './helpers.js';

/** Two server workers of one host (one register), the client knowing the server's key from a directory. */
async function twoWorkers(entries = 1024): Promise<{ w: World; other: World['server'] }> {
  let key: Uint8Array | null = null;
  const w = await makeWorld('psk', {}, { lookup: () => (key ? { host: 'host-b', key } : undefined) });
  key = w.server.keys[0]!.publicRaw;
  const buffer = createRegisterBuffer(entries);
  w.server = w.makeSide('host-b', w.server.keys, { registerEntries: entries }, undefined, T0 - 60_000, { buffer, holder: 1 });
  const other = w.makeSide('host-b', w.server.keys, { registerEntries: entries }, undefined, T0 - 60_000, { buffer, holder: 2 });
  return { w, other };
}

const mac = (i: number): Uint8Array => {
  const m = new Uint8Array(16);
  new DataView(m.buffer).setUint32(0, i * 7919);
  new DataView(m.buffer).setUint32(12, i);
  return m;
};

describe('shared strike register: two engines of one host', () => {
  it('a proof accepted by one worker and replayed from another address to the other worker is refused replay', async () => {
    const { w, other } = await twoWorkers();
    const p = exchange(w, tuple(), 42, 43); // the full token: the other worker can check the proof
    expect(p.synIn.kind).toBe('proof');
    expect(p.synAckIn?.kind).toBe('proof');
    expect(other.engine.serverSynIn(tuple(ATTACKER_ADDR), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    expect(other.engine.serverSynIn(tuple(undefined, undefined, 40100), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    // The same tuple at the other worker (it does not remember the handshake): a replay too.
    expect(other.engine.serverSynIn(tuple(), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
  });

  it('a duplicate from the same tuple at the worker that holds the handshake is that handshake', async () => {
    const { w, other } = await twoWorkers();
    const p = exchange(w, tuple(), 42, 43);
    expect(p.synIn.kind).toBe('proof');
    expect(w.server.engine.serverSynIn(tuple(), 42, p.syn).kind).toBe('proof');
    expect(w.server.engine.serverSynAckOut(tuple(), 42, 43, w.serverPu, new Uint8Array(4096)).kind).toBe('proof');
    expect(w.server.engine.stats().registerSize).toBe(1);
    expect(other.engine.serverSynIn(tuple(ATTACKER_ADDR), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    expect(other.engine.stats().registerSize).toBe(1); // one table
  });

  it('a full register refuses register-full at every worker, and takes entries again once they expire', async () => {
    const { w, other } = await twoWorkers(2);
    expect(exchange(w, tuple(undefined, undefined, 41000), 1, 2).synIn.kind).toBe('proof');
    // The other worker has not seen the token the client now names by reference: it asks for it first.
    expect(last(connect({ ...w, server: other }, tuple(undefined, undefined, 41001), 3)).synIn.kind).toBe('proof');
    expect(exchange(w, tuple(undefined, undefined, 41002), 5, 6).synIn).toEqual({ kind: 'refuse', reason: 'register-full' });
    expect(exchange({ ...w, server: other }, tuple(undefined, undefined, 41003), 7, 8).synIn).toEqual({ kind: 'refuse', reason: 'register-full' });
    expect(w.server.engine.stats().registerFull + other.engine.stats().registerFull).toBe(2);
    w.clock.ms += 8_001; // past the retention (3 + 2 + 3 s)
    expect(exchange(w, tuple(undefined, undefined, 41004), 9, 10).synIn.kind).toBe('proof');
  });
});

describe('shared strike register: the table', () => {
  it('answers new, same (this tuple), seen (another tuple); full when a stripe has no room; bounded by its capacity', () => {
    const r = new StrikeRegister(4, 1_000);
    expect(r.capacity).toBe(4);
    expect(r.strike(mac(1), 11, 0)).toBe('new');
    expect(r.strike(mac(1), 11, 10)).toBe('same');
    expect(r.strike(mac(1), 12, 20)).toBe('seen');
    for (let i = 2; i <= 4; i++) expect(r.strike(mac(i), i, 30)).toBe('new');
    expect(r.strike(mac(5), 5, 40)).toBe('full');
    expect(r.size).toBe(4);
    expect(r.strike(mac(5), 5, 1_000)).toBe('new'); // mac(1) expired at 1000: its slot is reused
    expect(r.strike(mac(1), 11, 1_001)).toBe('full'); // gone, and no room for it again
    expect(r.size).toBe(4);
  });

  it('a lock left by a worker that ended inside the critical section is freed by the pool, never taken over silently', () => {
    const buffer = createRegisterBuffer(16);
    const i32 = new Int32Array(buffer);
    Atomics.store(i32, 4, 7); // stripe 0 (the only one) held by holder 7
    expect(releaseHeldBy(buffer, 3)).toBe(0);
    expect(releaseHeldBy(buffer, 7)).toBe(1);
    expect(new StrikeRegister(16, 1_000, { buffer, holder: 1 }).strike(mac(1), 1, 0)).toBe('new');
  });

  it('rejects a buffer it did not make and bad bounds with a clear error', () => {
    expect(() => new StrikeRegister(1, 1, { buffer: new SharedArrayBuffer(64), holder: 1 })).toThrow(/not one createRegisterBuffer made/);
    expect(() => createRegisterBuffer(0)).toThrow(/registerEntries must be an integer/);
    expect(() => new StrikeRegister(4, 1, { buffer: createRegisterBuffer(4), holder: 0 })).toThrow(/holder must be an integer >= 1/);
  });

  it('two worker threads striking the same keys at once: exactly one new per key', async () => {
    const built = new URL('../../../../dist/src/datapath/handshake/v2/register.js', import.meta.url);
    // Worker threads run JavaScript: the build (npx tsc -p tsconfig.json) must exist.
    expect(existsSync(fileURLToPath(built)), 'dist/ not built: run npx tsc -p tsconfig.json').toBe(true);
    const keys = 20_000;
    const buffer = createRegisterBuffer(65_536);
    const barrier = new SharedArrayBuffer(4);
    const script = fileURLToPath(new URL('./register-worker.mjs', import.meta.url));
    const run = (holder: number) =>
      new Promise<{ answers: Record<string, number>; fresh: number[] }>((resolve, reject) => {
        const t = new Worker(script, { workerData: { buffer, barrier, holder, keys, registerUrl: pathToFileURL(fileURLToPath(built)).href } });
        t.once('message', resolve);
        t.once('error', reject);
      });
    const [a, b] = await Promise.all([run(1), run(2)]);
    // Every key was recorded exactly once, by one of the two; the other saw it (another tuple hash: its holder id).
    expect(a!.answers.new! + b!.answers.new!).toBe(keys);
    expect(a!.answers.seen! + b!.answers.seen!).toBe(keys);
    expect(a!.answers.full! + b!.answers.full! + a!.answers.same! + b!.answers.same!).toBe(0);
    expect(new Set([...a!.fresh, ...b!.fresh]).size).toBe(keys);
    const check = new StrikeRegister(1, 10_000, { buffer, holder: 3 });
    check.expire(1_000);
    expect(check.size).toBe(keys);
  });
});
