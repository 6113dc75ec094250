// Protocol v2's security properties over real bytes (docs/protocol.md, "Properties"): each
// test plays the attack and asserts the refusal.

import { createHash, randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createEphemeralKey, createSecret, createTokenIssuer } from '../../../../src/identity/index.js';
import { encodeBlock, BlockType } from '../../../../src/datapath/handshake/wire.js';
import type { IssuedToken } from '../../../../src/datapath/handshake/types.js';
import { ATTACKER_ADDR, CLIENT_ADDR, connect, exchange, issue, last, makeWorld, staticKey, tuple, type World } from './helpers.js';

const out = () => new Uint8Array(4096);

/** A world past first contact: the next connection is by reference in both directions. */
async function warm(mode: 'psk' | 'ca' = 'psk', options = {}): Promise<World> {
  const w = await makeWorld(mode, options);
  expect(last(connect(w, tuple(undefined, undefined, 39999), 1)).synAckIn?.kind).toBe('proof');
  return w;
}

/** A world whose client knows the server's key from a directory: its first SYN proves, with the full token. */
async function withDirectory(options = {}): Promise<World> {
  let key: Uint8Array | null = null;
  const w = await makeWorld('psk', options, { lookup: () => (key ? { host: 'host-b', key } : undefined) });
  key = w.server.keys[0]!.publicRaw;
  return w;
}

function synOut(w: World, t = tuple(), isnC = 1234, pu = w.clientPu): Uint8Array {
  const o = out();
  const r = w.client.engine.clientSynOut(t, isnC, pu, o);
  if (r.kind !== 'attach') throw new Error(r.reason);
  return o.slice(0, r.length);
}

describe('authenticity', () => {
  it('a token signed with another secret is refused bad-signature', async () => {
    const w = await makeWorld('psk');
    const rogue = createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk: createSecret() });
    const pu = { tokens: [await issue(rogue, 'web', w.clock.ms)] };
    const r = w.server.engine.serverSynIn(tuple(), 1, synOut(w, tuple(), 1, pu));
    expect(r).toEqual({ kind: 'refuse', reason: 'bad-signature' });
  });

  it('a stolen token without its key: the proof fails bad-mac (full token and by reference)', async () => {
    const w = await warm();
    const stolen = w.clientPu.tokens[0]!;
    // The thief has the token bytes (it travels in clear) but not the epk private key.
    const thief: IssuedToken = { bytes: stolen.bytes, hash: stolen.hash, epkPrivate: createEphemeralKey().privateKey };
    const attacker = w.makeSide('host-m', [staticKey()]);
    // Teach the attacker the server's key the honest way (first contact), then attack.
    const t = tuple(ATTACKER_ADDR, undefined, 50000);
    for (const isn of [7, 8]) {
      const o = out();
      const r = attacker.engine.clientSynOut(t, isn, { tokens: [thief] }, o);
      expect(r.kind).toBe('attach');
      const res = w.server.engine.serverSynIn(t, isn, o.subarray(0, r.kind === 'attach' ? r.length : 0));
      if (res.kind === 'retry') {
        const sa = w.server.engine.serverSynAckOut(t, isn, 99, w.serverPu, o);
        expect(sa.kind).toBe('retry');
        expect(attacker.engine.clientSynAckIn(t, isn, 99, o.slice(0, sa.kind === 'retry' ? sa.length : 0)).kind).toBe('retry');
        continue;
      }
      expect(res).toEqual({ kind: 'refuse', reason: 'bad-mac' });
    }
  });

  it('a proof made under another host key is never accepted: the server teaches its own key instead', async () => {
    const w = await makeWorld('psk', {}, { lookup: () => ({ host: 'host-b', key: staticKey().publicRaw }) });
    const p = exchange(w, tuple(), 1, 2);
    expect(p.synIn.kind).toBe('retry');
    expect(p.synAckOut?.kind).toBe('retry');
  });

  it('a revoked peer is refused even by reference (cached)', async () => {
    const w = await warm();
    w.server.revoked.add('host-a');
    expect(exchange(w, tuple(), 2, 3).synIn).toEqual({ kind: 'refuse', reason: 'revoked' });
    const w2 = await warm();
    w2.client.revoked.add('host-b');
    expect(exchange(w2, tuple(undefined, undefined, 40001), 4, 5).synAckIn).toEqual({ kind: 'refuse', reason: 'revoked' });
  });

  it('an expired token is refused by reference too', async () => {
    const w = await warm();
    w.clock.ms += 700_000; // tokens live 600 s
    expect(exchange(w, tuple(), 2, 3).synIn).toEqual({ kind: 'refuse', reason: 'expired' });
  });

  it('a v1 block is refused with reason version', async () => {
    const w = await makeWorld('psk');
    const b = new Uint8Array(64);
    const n = encodeBlock({ type: BlockType.Syn, nonceC: new Uint8Array(16), token: new Uint8Array([1, 2, 3]) }, b);
    expect(w.server.engine.serverSynIn(tuple(), 1, b.subarray(0, n))).toEqual({ kind: 'refuse', reason: 'version' });
    expect(w.client.engine.clientSynAckIn(tuple(), 1, 2, b.subarray(0, n))).toEqual({ kind: 'refuse', reason: 'version' });
  });
});

describe('mutual authentication', () => {
  it('the client checks the server proof: tampered MAC, another ISNs, another client proof all fail bad-mac', async () => {
    const w = await warm();
    const t = tuple();
    const p = exchange(w, t, 100, 200);
    expect(p.synAckIn?.kind).toBe('proof');
    const forged = p.synAck!.slice();
    forged[5] = forged[5]! ^ 1; // inside macS
    const t2 = tuple(undefined, undefined, 40002);
    exchange(w, t2, 300, 400);
    expect(w.client.engine.clientSynAckIn(t2, 300, 400, forged)).toEqual({ kind: 'refuse', reason: 'bad-mac' });
    // The genuine SYN-ACK moved to another connection of the same client (another ISNs / ISNc).
    expect(w.client.engine.clientSynAckIn(t2, 300, 201, p.synAck!)).toEqual({ kind: 'refuse', reason: 'bad-mac' });
    expect(w.client.engine.clientSynAckIn(t2, 300, 200, p.synAck!)).toEqual({ kind: 'refuse', reason: 'bad-mac' });
  });

  it('a host holding the server token but not the host key cannot answer: bad-mac', async () => {
    const w = await warm();
    const t = tuple(undefined, undefined, 40003);
    const syn = synOut(w, t, 500);
    // The impostor intercepts the SYN; it has the server PU's token bytes (public) but its
    // own static key: it cannot derive the pair key, so it guesses a MAC.
    const impostor = w.makeSide('host-b', [staticKey()]);
    expect(impostor.engine.serverSynIn(t, 500, syn).kind).toBe('retry'); // it does not even know the key id
    const fake = new Uint8Array(1 + 16 + 16 + 4);
    fake[0] = 1; // TOKEN_REF
    randomFillSync(fake.subarray(1, 17));
    fake.set(w.serverPu.tokens[0]!.hash.subarray(0, 16), 17);
    fake.set([2, 2, 0, fake.length], fake.length - 4);
    expect(w.client.engine.clientSynAckIn(t, 500, 600, fake)).toEqual({ kind: 'refuse', reason: 'bad-mac' });
  });

  it("a server token of another host, under a key of this one, is refused bad-host-key", async () => {
    const w = await makeWorld('psk');
    // The server host presents a token issued by host-a (not its own issuer): the key the
    // proof was made under is host-b's.
    connect(w, tuple(), 1);
    w.serverPu.tokens.unshift(await issue(w.issuers.a, 'alien', w.clock.ms));
    const p = exchange(w, tuple(undefined, undefined, 40004), 7, 8);
    expect(p.synIn.kind).toBe('proof');
    expect(p.synAckIn).toEqual({ kind: 'refuse', reason: 'bad-host-key' });
  });
});

describe('no replay', () => {
  it('a verbatim replay after the connection is gone: the kernel opens a new request (new ISNs) and that SYN-ACK is refused replay', async () => {
    const w = await warm();
    const t = tuple();
    const p = exchange(w, t, 42, 43);
    expect(p.synAckIn?.kind).toBe('proof');
    w.clock.ms += 1500;
    // The SYN itself is the same handshake's as far as the engine can tell...
    expect(w.server.engine.serverSynIn(t, 42, p.syn).kind).toBe('proof');
    // ...but the server's stack answers it from a new request, with a new ISN: refused, never authorized.
    expect(w.server.engine.serverSynAckOut(t, 42, 4242, w.serverPu, out())).toEqual({ kind: 'refuse', reason: 'replay' });
  });

  it('a verbatim replay whose handshake state is gone (evicted) is refused replay by the strike register', async () => {
    const w = await warm('psk', { stateEntries: 2 });
    const t = tuple();
    const p = exchange(w, t, 42, 43);
    for (let i = 0; i < 4; i++) exchange(w, tuple(undefined, undefined, 41000 + i), 100 + i, 200 + i);
    w.clock.ms += 1500;
    expect(w.server.engine.serverSynIn(t, 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
  });

  it('the same proof from another address or port is a replay (the shared register), from another ISN it fails the MAC', async () => {
    const w = await warm();
    const t = tuple();
    const p = exchange(w, t, 42, 43);
    expect(w.server.engine.serverSynIn(tuple(ATTACKER_ADDR), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    expect(w.server.engine.serverSynIn(tuple(undefined, undefined, 40005), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    expect(w.server.engine.serverSynIn(tuple(undefined, undefined, 40000, 8443), 42, p.syn)).toEqual({ kind: 'refuse', reason: 'replay' });
    expect(w.server.engine.serverSynIn(t, 43, p.syn)).toEqual({ kind: 'refuse', reason: 'bad-mac' });
    // Nothing the replays did spoils the original handshake: its duplicate is still itself.
    expect(w.server.engine.serverSynIn(t, 42, p.syn).kind).toBe('proof');
  });

  it('a NAT between the hooks (MASQUERADE on the client host, DNAT/REDIRECT on the server host) leaves the proofs valid', async () => {
    const w = await warm();
    // Client's view: 10.213.77.1:40006 -> 10.213.77.2:443; the server's: the client host's
    // masqueraded address and another source port, to the port a REDIRECT sent it to.
    const masq = exchange(w, tuple(undefined, undefined, 40006), 1, 2, { serverView: tuple(Uint8Array.of(10, 213, 77, 9), undefined, 51006) });
    expect(masq.synIn.kind).toBe('proof');
    expect(masq.synAckIn?.kind).toBe('proof');
    const redirect = exchange(w, tuple(undefined, undefined, 40007, 9090), 3, 4, { serverView: tuple(undefined, undefined, 40007, 8080) });
    expect(redirect.synIn.kind).toBe('proof');
    expect(redirect.synAckIn?.kind).toBe('proof');
  });

  it('outside the window a capture is stale, also once the register forgot it', async () => {
    const w = await warm();
    const t = tuple();
    const p = exchange(w, t, 42, 43);
    w.clock.ms += 5_001; // skew 3 s + maxAge 2 s
    expect(w.server.engine.serverSynIn(t, 42, p.syn)).toEqual({ kind: 'refuse', reason: 'stale' });
    w.clock.ms += 60_000;
    expect(w.server.engine.stats().registerSize).toBeGreaterThan(0); // expiry is lazy...
    expect(w.server.engine.serverSynIn(t, 42, p.syn)).toEqual({ kind: 'refuse', reason: 'stale' });
    expect(w.server.engine.stats().registerSize).toBe(0); // ...and happened on this call
  });

  it('after a daemon restart (register lost) a capture from before it is refused restarted, a fresh proof later passes', async () => {
    const w = await withDirectory();
    const t = tuple();
    const p = exchange(w, t, 42, 43); // a full-token proof SYN: the new run can check it
    expect(p.synIn.kind).toBe('proof');
    const byRef = exchange(w, tuple(undefined, undefined, 40007), 44, 45);
    expect(byRef.synIn.kind).toBe('proof');
    w.clock.ms += 500;
    w.restartServer();
    w.clock.ms += 100;
    expect(w.server.engine.serverSynIn(t, 42, p.syn)).toEqual({ kind: 'refuse', reason: 'restarted' });
    // By reference too (the replayed full token above put it back in the cache).
    expect(w.server.engine.serverSynIn(tuple(undefined, undefined, 40007), 44, byRef.syn)).toEqual({ kind: 'refuse', reason: 'restarted' });
    w.clock.ms += 3_000;
    expect(last(connect(w, tuple(undefined, undefined, 40008), 78)).synAckIn?.kind).toBe('proof');
  });

  it('a network duplicate of a SYN, or an earlier transmission arriving late, is the same handshake: answered from the same request', async () => {
    const w = await warm();
    const t = tuple();
    const p = exchange(w, t, 42, 43);
    expect(w.server.engine.serverSynIn(t, 42, p.syn).kind).toBe('proof');
    // The kernel retransmits its SYN-ACK from the request it holds (same ISN): the same answer.
    const sa = w.server.engine.serverSynAckOut(t, 42, 43, w.serverPu, out());
    expect(sa.kind).toBe('proof');
    // A retransmitted SYN (new proof), then the first one late: still the same handshake.
    w.clock.ms += 1000;
    const again = synOut(w, t, 42);
    expect(w.server.engine.serverSynIn(t, 42, again).kind).toBe('proof');
    expect(w.server.engine.serverSynIn(t, 42, p.syn).kind).toBe('proof');
    expect(w.server.engine.serverSynAckOut(t, 42, 43, w.serverPu, out()).kind).toBe('proof');
    expect(w.server.engine.stats().registerSize).toBe(3); // warm-up, first, retransmission: duplicates add nothing
  });
});

describe('freshness', () => {
  it('tolerates ±skew of clock difference, refuses beyond', async () => {
    for (const [offset, ok] of [
      [2_999, true],
      [-4_999, true],
      [3_001, false],
      [-5_001, false],
    ] as const) {
      const w = await warm();
      const t = tuple(undefined, undefined, 40010);
      const syn = synOut(w, t, 9);
      w.clock.ms -= offset; // the server's clock differs from the client's by `offset`
      const r = w.server.engine.serverSynIn(t, 9, syn);
      expect(r.kind === 'proof', `offset ${offset}`).toBe(ok);
      if (!ok) expect(r).toEqual({ kind: 'refuse', reason: 'stale' });
    }
  });
});

describe('bounded state', () => {
  it('a full register refuses new proofs (register-full), never accepts one unrecorded, and recovers as entries expire', async () => {
    const w = await warm('psk', { registerEntries: 4 });
    let refused = 0;
    let accepted = 0;
    for (let i = 0; i < 10; i++) {
      const r = exchange(w, tuple(undefined, undefined, 41000 + i), 100 + i, 200 + i).synIn;
      if (r.kind === 'proof') accepted++;
      else if (r.kind === 'refuse' && r.reason === 'register-full') refused++;
    }
    // One strike was spent warming up.
    expect(accepted).toBe(3);
    expect(refused).toBe(7);
    expect(w.server.engine.stats().registerSize).toBe(4);
    expect(w.server.engine.stats().registerFull).toBe(7);
    w.clock.ms += 8_000;
    expect(exchange(w, tuple(undefined, undefined, 42000), 1, 2).synIn.kind).toBe('proof');
  });

  it('property: however many SYNs arrive, every table stays within its bound', async () => {
    const w = await warm('psk', { registerEntries: 64, stateEntries: 32, peerTokens: 8 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 400 })), { minLength: 1, maxLength: 200 }), async (conns) => {
        for (const [port, isn, dt] of conns) {
          w.clock.ms += dt;
          exchange(w, tuple(undefined, undefined, port), isn, isn ^ 1);
        }
        const s = w.server.engine.stats();
        expect(s.registerSize).toBeLessThanOrEqual(64);
        expect(s.serverState).toBeLessThanOrEqual(32);
        expect(s.peerTokens).toBeLessThanOrEqual(8);
      }),
      { numRuns: 20 },
    );
  });
});

describe('rotation', () => {
  it('a rotated client token is sent in full once, then by reference', async () => {
    const w = await warm();
    w.clientPu.tokens.unshift(await issue(w.issuers.a, 'web', w.clock.ms, w.client.keys[0]!.publicRaw));
    const before = w.server.verifications.count;
    const p1 = exchange(w, tuple(undefined, undefined, 40020), 1, 2);
    expect(p1.synAckIn?.kind).toBe('proof');
    expect(w.server.verifications.count).toBe(before + 1);
    const p2 = exchange(w, tuple(undefined, undefined, 40021), 3, 4);
    expect(p2.synAckIn?.kind).toBe('proof');
    expect(p2.syn.length).toBe(65);
    expect(w.server.verifications.count).toBe(before + 1);
  });

  it('a rotated server token goes in full (the client named the old one), then by reference', async () => {
    const w = await warm();
    w.serverPu.tokens.unshift(await issue(w.issuers.b, 'db', w.clock.ms, w.server.keys[0]!.publicRaw));
    const p1 = exchange(w, tuple(undefined, undefined, 40022), 1, 2);
    expect(p1.synAckIn?.kind).toBe('proof');
    expect(p1.synAck!.length).toBeGreaterThan(100);
    const p2 = exchange(w, tuple(undefined, undefined, 40023), 3, 4);
    expect(p2.synAck!.length).toBe(37);
  });

  it('host key rotation: the old key is accepted until its grace ends, then the server teaches the new one', async () => {
    const w = await warm();
    const oldKey = w.server.keys[0]!;
    const newKey = staticKey();
    w.server.engine.setHostKeys([newKey, { ...oldKey, notAfter: w.clock.ms + 60_000 }]);
    w.serverPu.tokens.unshift(await issue(w.issuers.b, 'db', w.clock.ms, newKey.publicRaw));
    // Within the grace: the client still proves under the old key, accepted.
    const inGrace = exchange(w, tuple(undefined, undefined, 40030), 1, 2);
    expect(inGrace.synIn.kind).toBe('proof');
    expect(inGrace.synAckIn?.kind).toBe('proof');
    // That SYN-ACK carried the new token in full: the client learned the new key from it.
    const next = exchange(w, tuple(undefined, undefined, 40031), 3, 4);
    expect(next.synIn.kind).toBe('proof');
  });

  it('after the grace a proof under the old key gets a retry teaching the new key, and the retransmission proves', async () => {
    const w = await warm();
    const oldKey = w.server.keys[0]!;
    const newKey = staticKey();
    w.serverPu.tokens.unshift(await issue(w.issuers.b, 'db', w.clock.ms, newKey.publicRaw));
    w.server.engine.setHostKeys([newKey, { ...oldKey, notAfter: w.clock.ms - 1 }]);
    // The client still holds the old key (by-reference SYN-ACKs never showed it the new token).
    const passes = connect(w, tuple(undefined, undefined, 40040), 5);
    expect(passes.map((p) => p.synIn.kind)).toEqual(['retry', 'proof']);
    expect(last(passes).synAckIn?.kind).toBe('proof');
  });
});

describe('tampering and malformed blocks', () => {
  it('every single-byte change of a proof SYN is refused or asks for a retry, never accepted', async () => {
    for (const byRef of [true, false]) {
      // A by-reference SYN after warm-up; a full-token one with the key from the directory.
      const w = byRef ? await warm() : await withDirectory();
      const t = tuple(undefined, undefined, 40050);
      const syn = synOut(w, t, 31);
      const reasons = new Set<string>();
      for (let i = 0; i < syn.length; i += byRef ? 1 : 7) {
        const bad = syn.slice();
        bad[i] = bad[i]! ^ 0x20;
        const r = w.server.engine.serverSynIn(t, 31, bad);
        expect(r.kind, `byte ${i}`).not.toBe("proof");
        reasons.add(r.kind === 'refuse' ? r.reason : r.kind);
      }
      expect(reasons.has('bad-mac')).toBe(true);
      expect(w.server.engine.serverSynIn(t, 31, syn).kind).toBe('proof');
    }
  });

  it('every single-byte change of a proof SYN-ACK is refused or asks for a retry, never accepted', async () => {
    const w = await warm();
    const t = tuple(undefined, undefined, 40060);
    const p = exchange(w, t, 31, 32);
    expect(p.synAckIn?.kind).toBe('proof');
    for (let i = 0; i < p.synAck!.length; i++) {
      const bad = p.synAck!.slice();
      bad[i] = bad[i]! ^ 0x01;
      expect(w.client.engine.clientSynAckIn(t, 31, 32, bad).kind, `byte ${i}`).not.toBe('proof');
    }
  });

  it('truncated, extended and random blocks are refused without throwing', async () => {
    const w = await warm();
    const t = tuple();
    const syn = synOut(w, t, 5);
    for (let n = 0; n < syn.length; n++) expect(w.server.engine.serverSynIn(t, 5, syn.subarray(0, n)).kind).toBe('refuse');
    const longer = new Uint8Array(syn.length + 1);
    longer.set(syn, 0);
    expect(w.server.engine.serverSynIn(t, 5, longer).kind).toBe('refuse');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        expect(w.server.engine.serverSynIn(t, 5, bytes).kind).not.toBe('proof');
        expect(w.client.engine.clientSynAckIn(t, 5, 6, bytes).kind).not.toBe('proof');
      }),
      { numRuns: 2000 },
    );
  });

  it('a SYN-ACK with a token by reference the client does not hold asks for a retry (not a refusal)', async () => {
    const w = await warm();
    const t = tuple(undefined, undefined, 40070);
    const p = exchange(w, t, 3, 4);
    const other = p.synAck!.slice();
    other.set(createHash('sha256').update('unknown').digest().subarray(0, 16), 17);
    expect(w.client.engine.clientSynAckIn(t, 3, 4, other)).toEqual({ kind: 'retry', reason: 'retry' });
  });
});
