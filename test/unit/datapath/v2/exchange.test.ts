// Protocol v2 over real bytes: first contact, steady state (by reference, no verification,
// no key agreement), retransmissions, sizes. The security properties have their own files.

import { describe, expect, it } from 'vitest';
import { FLAG_NEED_KEY, FLAG_TOKEN_REF, V2Type, decodeBlock2, fillTuple, newTuple } from '../../../../src/datapath/handshake/v2/index.js';
import { parseTcp, TCP_ACK, TCP_SYN, type TcpPacket } from '../../../../src/packet/index.js';
import { build } from '../../packet/helpers.js';
import { connect, exchange, last, makeWorld, tuple, SERVER_ADDR } from './helpers.js';

function synFlags(syn: Uint8Array): number {
  const d = decodeBlock2(syn);
  if (typeof d === 'string' || d.block.type !== V2Type.Syn) throw new Error('not a SYN block');
  return d.block.flags;
}

describe('protocol v2 exchange', () => {
  for (const mode of ['psk', 'ca'] as const) {
    it(`${mode}: first contact learns the host key in one retry, then proves in the SYN retransmission`, async () => {
      const w = await makeWorld(mode);
      const passes = connect(w, tuple(), 1000);
      expect(passes).toHaveLength(2);
      const [first, second] = passes as [(typeof passes)[0], (typeof passes)[0]];
      expect(synFlags(first.syn) & FLAG_NEED_KEY).toBe(FLAG_NEED_KEY);
      expect(first.synIn.kind).toBe('retry');
      // The retry SYN-ACK must not authorize the server side.
      expect(first.synAckOut?.kind).toBe('retry');
      expect(first.synAckIn).toEqual({ kind: 'retry', reason: 'retry' });
      expect(second.synIn.kind).toBe('proof');
      expect(second.synAckOut?.kind).toBe('proof');
      expect(second.synAckIn?.kind).toBe('proof');
      if (second.synAckIn?.kind === 'proof') expect(second.synAckIn.peer.claims.sub).toBe('db');
      if (second.synIn.kind === 'proof') expect(second.synIn.peer.claims.sub).toBe('web');
    });

    it(`${mode}: after first contact a connection costs no token verification and no key agreement, and blocks stay ≤ 100 bytes`, async () => {
      const w = await makeWorld(mode);
      expect(last(connect(w, tuple(), 1)).synAckIn?.kind).toBe('proof');
      // The second connection still sends the server's token in full once? No: the client
      // names the server token it verified, and the server knows the client's.
      const before = { c: w.client.verifications.count, s: w.server.verifications.count };
      const derivations = w.server.engine.stats().pairKeyDerivations + w.client.engine.stats().pairKeyDerivations;
      for (let i = 0; i < 20; i++) {
        const p = exchange(w, tuple(undefined, undefined, 41000 + i), 5000 + i, 9000 + i);
        expect(p.synIn.kind).toBe('proof');
        expect(p.synAckIn?.kind).toBe('proof');
        expect(p.syn.length).toBeLessThanOrEqual(100);
        expect(p.synAck!.length).toBeLessThanOrEqual(100);
        expect(synFlags(p.syn) & FLAG_TOKEN_REF).toBe(FLAG_TOKEN_REF);
      }
      expect(w.client.verifications.count).toBe(before.c);
      expect(w.server.verifications.count).toBe(before.s);
      expect(w.server.engine.stats().pairKeyDerivations + w.client.engine.stats().pairKeyDerivations).toBe(derivations);
    });
  }

  it('with a host directory, the first connection proves at once (tokens in full), the next by reference', async () => {
    let serverKey: Uint8Array | null = null;
    const w = await makeWorld('psk', {}, { lookup: (a) => (a === '10.213.77.2' && serverKey ? { host: 'host-b', key: serverKey } : undefined) });
    serverKey = w.server.keys[0]!.publicRaw;
    const p1 = exchange(w, tuple(), 1, 2);
    expect(synFlags(p1.syn)).toBe(0);
    expect(p1.synIn.kind).toBe('proof');
    expect(p1.synAckIn?.kind).toBe('proof');
    const p2 = exchange(w, tuple(undefined, undefined, 40001), 3, 4);
    expect(synFlags(p2.syn)).toBe(FLAG_TOKEN_REF);
    expect(p2.synAckIn?.kind).toBe('proof');
    expect(p2.syn.length).toBe(65);
    expect(p2.synAck!.length).toBe(37);
  });

  it('a lost SYN-ACK: the SYN retransmission carries a fresh proof and the answer to either proof verifies', async () => {
    const w = await makeWorld('psk');
    connect(w, tuple(), 1);
    const t = tuple(undefined, undefined, 40100);
    const out = new Uint8Array(4096);
    const first = exchange(w, t, 777, 888); // its SYN-ACK "lost": the client never sees it
    expect(first.synIn.kind).toBe('proof');
    // A copy of the first answer, delayed in the network.
    const delayed = first.synAck!;
    w.clock.ms += 1000;
    const again = w.client.engine.clientSynOut(t, 777, w.clientPu, out);
    expect(again.kind).toBe('attach');
    const syn2 = out.slice(0, again.kind === 'attach' ? again.length : 0);
    expect(Buffer.from(syn2).equals(Buffer.from(first.syn))).toBe(false);
    expect(w.server.engine.serverSynIn(t, 777, syn2).kind).toBe('proof');
    const sa = w.server.engine.serverSynAckOut(t, 777, 888, w.serverPu, out);
    expect(sa.kind).toBe('proof');
    expect(w.client.engine.clientSynAckIn(t, 777, 888, out.slice(0, sa.kind === 'proof' ? sa.length : 0)).kind).toBe('proof');
    expect(w.client.engine.clientSynAckIn(t, 777, 888, delayed).kind).toBe('proof');
  });

  it('the server kernel retransmits its SYN-ACK: the same answer, accepted again', async () => {
    const w = await makeWorld('psk');
    connect(w, tuple(), 1);
    const t = tuple(undefined, undefined, 40200);
    const p = exchange(w, t, 10, 20);
    expect(p.synAckIn?.kind).toBe('proof');
    w.clock.ms += 3000;
    const out = new Uint8Array(4096);
    const sa = w.server.engine.serverSynAckOut(t, 10, 20, w.serverPu, out);
    expect(sa.kind).toBe('proof');
    expect(Buffer.from(out.subarray(0, sa.kind === 'proof' ? sa.length : 0)).equals(Buffer.from(p.synAck!))).toBe(true);
    expect(w.client.engine.clientSynAckIn(t, 10, 20, p.synAck!).kind).toBe('proof');
  });

  it('a SYN-ACK out with no SYN judged (state lost) is refused no-state, never sent unproven', async () => {
    const w = await makeWorld('psk');
    const r = w.server.engine.serverSynAckOut(tuple(), 1, 2, w.serverPu, new Uint8Array(4096));
    expect(r).toEqual({ kind: 'refuse', reason: 'no-state' });
  });

  it('IPv6 tuples prove the same way', async () => {
    const c6 = Uint8Array.from(Buffer.from('fd00021300000000000000000000000a', 'hex'));
    const s6 = Uint8Array.from(Buffer.from('fd00021300000000000000000000000b', 'hex'));
    const w = await makeWorld('psk');
    const passes = connect(w, tuple(c6, s6), 5);
    expect(last(passes).synAckIn?.kind).toBe('proof');
    expect(SERVER_ADDR.length).toBe(4);
  });

  it('a server that lost its token cache (restart) says so, and the client sends the full token', async () => {
    const w = await makeWorld('psk');
    connect(w, tuple(), 1);
    w.clock.ms += 10_000;
    w.restartServer();
    w.clock.ms += 4_000; // past the restart guard (skew)
    const passes = connect(w, tuple(undefined, undefined, 40300), 50);
    expect(passes).toHaveLength(2);
    expect(passes[0]!.synIn.kind).toBe('retry');
    expect(passes[0]!.synAckIn?.kind).toBe('retry');
    expect(synFlags(passes[1]!.syn) & FLAG_TOKEN_REF).toBe(0);
    expect(passes[1]!.synAckIn?.kind).toBe('proof');
  });

  it('fillTuple names the tuple by role from real SYN and SYN-ACK packets, the same at both hosts', async () => {
    const w = await makeWorld('psk');
    connect(w, tuple(undefined, undefined, 40400), 1);
    const A = Uint8Array.of(10, 213, 77, 1);
    const B = Uint8Array.of(10, 213, 77, 2);
    const syn = build({ family: 4, src: A, dst: B, sport: 40500, dport: 443, seq: 1000, ack: 0, flags: TCP_SYN, window: 64240, options: new Uint8Array(0), payload: new Uint8Array(0) });
    const synAck = build({ family: 4, src: B, dst: A, sport: 443, dport: 40500, seq: 5000, ack: 1001, flags: TCP_SYN | TCP_ACK, window: 64240, options: new Uint8Array(0), payload: new Uint8Array(0) });
    const ps = parseTcp(syn) as TcpPacket;
    const pa = parseTcp(synAck) as TcpPacket;
    const tv = newTuple();
    const out = new Uint8Array(4096);
    const so = w.client.engine.clientSynOut(fillTuple(tv, syn, ps, true), ps.seq, w.clientPu, out);
    expect(so.kind).toBe('attach');
    const block = out.slice(0, so.kind === 'attach' ? so.length : 0);
    expect(w.server.engine.serverSynIn(fillTuple(tv, syn, ps, true), ps.seq, block).kind).toBe('proof');
    const isnC = (pa.ack - 1) >>> 0;
    const sa = w.server.engine.serverSynAckOut(fillTuple(tv, synAck, pa, false), isnC, pa.seq, w.serverPu, out);
    expect(sa.kind).toBe('proof');
    const r = w.client.engine.clientSynAckIn(fillTuple(tv, synAck, pa, false), isnC, pa.seq, out.slice(0, sa.kind === 'proof' ? sa.length : 0));
    expect(r.kind).toBe('proof');
    // Named by local/remote instead (the SYN-ACK's source as "client"), the proofs differ.
    const wrong = w.client.engine.clientSynAckIn(fillTuple(tv, synAck, pa, true), isnC, pa.seq, out.slice(0, sa.kind === 'proof' ? sa.length : 0));
    expect(wrong.kind).not.toBe('proof');
  });
});

describe('protocol v2 options', () => {
  it('are checked at construction, with the option named', async () => {
    const { createV2Engine } = await import('../../../../src/datapath/handshake/v2/index.js');
    const deps = { now: () => 0, random: () => undefined, verifyToken: () => null };
    expect(() => createV2Engine({ ...deps, options: { registerEntries: 0 } })).toThrow(/registerEntries must be an integer in 1\.\./);
    expect(() => createV2Engine({ ...deps, options: { skewMs: -1 } })).toThrow(/skewMs/);
    expect(() => createV2Engine(deps)).not.toThrow();
  });
});
