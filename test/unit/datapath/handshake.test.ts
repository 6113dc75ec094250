// The handshake in its four queue passes (protocol v2), driven with real packet bytes between
// two in-process "hosts" (the same code the workers run, no queue, no root). Each required property of
// ARCHITECTURE.md has a test here that fails if the property breaks; test/integration repeats
// the important ones on the real kernel path.

import { describe, expect, it, beforeAll } from 'vitest';
import { HOOK_POST_ROUTING, HOOK_PRE_ROUTING, VERDICT_ACCEPT, VERDICT_DROP, VERDICT_REPEAT } from '../../../src/datapath/handshake/handshake.js';
import { createSecret } from '../../../src/identity/index.js';
import {
  markForPuIndex,
  OP_CLEAR_CLIENT_PENDING,
  OP_CLEAR_SERVER_PENDING,
  OP_SET_CLIENT_PENDING,
  OP_SET_SERVER_PENDING,
  HOST_SOCK,
  PU_DEST,
  REJECT_BIT,
} from '../../../src/marks.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../../src/packet/index.js';
import { build } from '../packet/helpers.js';
import { A_ADDR, B_ADDR, DIRECTORY, M_ADDR, fromAddress, handshake, hostPair, issue, makeHost, run, seg, tcp, type Host } from './handshake-helpers.js';

/** Publish `h`'s key under its address (a at .1, every other host at .2), as the fleet would. */
function DIRECTORY_SET(h: Host): void {
  DIRECTORY.set(h.name === 'host-a' ? '10.213.9.1' : '10.213.9.2', h.staticKey.publicRaw);
}

describe('handshake', () => {
  const psk = createSecret();
  let a: Host;
  let b: Host;

  beforeAll(async () => {
    ({ a, b } = await hostPair(psk));
    await a.addPu(2, ['app=other']);
  });

  it('authorizes same-label PUs in four passes and hands each stack an ordinary, byte-identical handshake', () => {
    const h = handshake(a, b);
    expect(h.synOut.verdict).toBe(VERDICT_REPEAT);
    expect(h.synOut.mark & OP_SET_CLIENT_PENDING).toBeTruthy();
    expect(h.synOut.bytes.length).toBeGreaterThan(h.syn.length + 100); // proof + token attached
    expect(h.synIn).toMatchObject({ verdict: VERDICT_REPEAT, mark: OP_SET_SERVER_PENDING, reason: 'ok' });
    expect(h.synIn.bytes).toEqual(h.syn); // stripped: the server stack sees the original SYN
    // The server's side is authorized when its SYN-ACK leaves; the client's when it arrives.
    expect(h.synAckOut).toMatchObject({ verdict: VERDICT_REPEAT, mark: OP_CLEAR_SERVER_PENDING, reason: 'ok' });
    expect(h.synAckOut.bytes.length).toBeGreaterThan(h.synAck.length + 16);
    expect(h.synAckIn).toMatchObject({ verdict: VERDICT_REPEAT, mark: OP_CLEAR_CLIENT_PENDING, reason: 'ok' });
    expect(h.synAckIn.bytes).toEqual(h.synAck);
    expect(b.flows.at(-1)).toMatchObject({ direction: 'ingress', stage: 'syn', verdict: 'accept', remoteHost: 'host-a', remotePu: 'host-a-pu1', remoteLabels: ['app=nginx'] });
    expect(a.flows.at(-1)).toMatchObject({ direction: 'egress', stage: 'syn-ack', verdict: 'accept', remoteHost: 'host-b', remoteLabels: ['app=nginx'] });
  });

  it('after first contact the tokens travel by reference: small blocks', () => {
    const h = handshake(a, b, { sport: 40002, isnC: 3000, isnS: 4000 });
    expect(h.synAckIn.reason).toBe('ok');
    // Marker 4 + a block of at most 100 bytes each way (docs/protocol.md, sizes).
    expect(h.synOut.bytes.length - h.syn.length).toBeLessThanOrEqual(104);
    expect(h.synAckOut.bytes.length - h.synAck.length).toBeLessThanOrEqual(104);
  });

  it('first contact without a published key takes one retry exchange that authorizes nothing, then four passes', async () => {
    const dir = new Map<string, Uint8Array>();
    const c = makeHost('host-c', psk, {}, { directory: dir });
    const d = makeHost('host-d', psk, {}, { directory: dir });
    await c.addPu(1, ['app=nginx']);
    await d.addPu(1, ['app=nginx'], 80);
    const syn = seg(A_ADDR, B_ADDR, 40003, 80, 500, 0, TCP_SYN);
    const first = run(d, run(c, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING);
    expect(first.reason).toBe('retry');
    const synAck = seg(B_ADDR, A_ADDR, 80, 40003, 600, 501, TCP_SYN | TCP_ACK);
    const retry = run(d, synAck, HOOK_POST_ROUTING);
    expect(retry).toMatchObject({ verdict: VERDICT_ACCEPT, mark: -1, reason: 'retry' }); // nothing authorized
    expect(run(c, retry.bytes, HOOK_PRE_ROUTING, markForPuIndex(1))).toMatchObject({ verdict: VERDICT_DROP, reason: 'retry' });
    // The kernel retransmits the SYN (same ISN): now with a proof.
    const again = run(d, run(c, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING);
    expect(again).toMatchObject({ verdict: VERDICT_REPEAT, mark: OP_SET_SERVER_PENDING, reason: 'ok' });
    expect(run(d, synAck, HOOK_POST_ROUTING)).toMatchObject({ mark: OP_CLEAR_SERVER_PENDING, reason: 'ok' });
  });

  it('retransmissions complete: a SYN sent again, a SYN-ACK sent again (same answer), in any order', () => {
    const sport = 40004;
    const syn = seg(A_ADDR, B_ADDR, sport, 80, 8000, 0, TCP_SYN);
    const synAck = seg(B_ADDR, A_ADDR, 80, sport, 9000, 8001, TCP_SYN | TCP_ACK);
    expect(run(b, run(a, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
    const sa1 = run(b, synAck, HOOK_POST_ROUTING);
    expect(sa1.reason).toBe('ok');
    // The SYN-ACK was lost: the client's kernel sends its SYN again; the server's stack answers again.
    expect(run(b, run(a, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
    const sa2 = run(b, synAck, HOOK_POST_ROUTING);
    expect(sa2).toMatchObject({ mark: OP_CLEAR_SERVER_PENDING, reason: 'ok' });
    expect(run(a, sa2.bytes, HOOK_PRE_ROUTING, markForPuIndex(1))).toMatchObject({ mark: OP_CLEAR_CLIENT_PENDING, reason: 'ok' });
    // A late copy of the first SYN-ACK on the now authorized client flow never reaches the queue
    // (the rules return authorized flows); a third SYN-ACK retransmission would be judged the same.
    expect(run(b, synAck, HOOK_POST_ROUTING).reason).toBe('ok');
  });

  it("judges a SYN to a PU found by the kernel's socket lookup (PU_DEST), before any port scan saw the port", async () => {
    await b.addPu(9, ['app=nginx']); // listening on 5555, not in the port map yet
    const lookup = (index: number) => (PU_DEST | markForPuIndex(index)) >>> 0;
    const tagged = run(a, seg(A_ADDR, B_ADDR, 42000, 5555, 300, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
    expect(run(b, tagged, HOOK_PRE_ROUTING, lookup(9))).toMatchObject({ verdict: VERDICT_REPEAT, mark: OP_SET_SERVER_PENDING, reason: 'ok' });
    // No token: the PU's rules decide (default: refused), instead of "an unprotected local service".
    const plain = seg(M_ADDR, B_ADDR, 42001, 5555, 400, 0, TCP_SYN);
    expect(run(b, plain, HOOK_PRE_ROUTING, lookup(9)).reason).toBe('missing-token');
    expect(run(b, plain, HOOK_PRE_ROUTING, 0)).toMatchObject({ verdict: VERDICT_ACCEPT, reason: 'no-pu' });
    // The lookup found a full socket of another owner (HOST_SOCK): not the PU, even on a PU's
    // port number (80 is b's PU 1 in the port map).
    const other = run(a, seg(A_ADDR, B_ADDR, 42002, 80, 500, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
    expect(run(b, other, HOOK_PRE_ROUTING, HOST_SOCK)).toMatchObject({ verdict: VERDICT_ACCEPT, reason: 'no-pu' });
    // Neither bit (no full socket, e.g. a reused 4-tuple in TIME_WAIT): the port map decides.
    const reused = run(a, seg(A_ADDR, B_ADDR, 42003, 80, 600, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
    expect(run(b, reused, HOOK_PRE_ROUTING, 0)).toMatchObject({ verdict: VERDICT_REPEAT, reason: 'ok' });
    // A PU this worker does not know yet (its snapshot is on the way): refused, the client retries.
    expect(run(b, plain, HOOK_PRE_ROUTING, lookup(42))).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-pu' });
    expect(run(b, tagged, HOOK_PRE_ROUTING, lookup(42))).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-pu' });
  });

  it('never queues a third packet: an ACK that reaches a queue (rules of another version) is dropped, never authorized', () => {
    const h = handshake(a, b, { sport: 40001, isnC: 7000, isnS: 9000 });
    expect(h.synAckIn.reason).toBe('ok');
    for (const flags of [TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_FIN]) {
      const ack = seg(A_ADDR, B_ADDR, 40001, 80, 7001, 9001, flags, new TextEncoder().encode('GET /'));
      expect(run(b, ack, HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-state' });
      expect(run(a, ack, HOOK_POST_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-state' });
    }
  });

  it('keeps its own copy of per-flow values: the queue overwrites its receive buffer between batches', () => {
    // The worker hands the handshake views of one reused Buffer; whatever the server keeps
    // from a SYN must survive the next batch overwriting that memory (Buffer#slice is a view).
    const syn = seg(A_ADDR, B_ADDR, 41003, 80, 71_000, 0, TCP_SYN);
    const tagged = run(a, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
    const shared = Buffer.alloc(4096);
    shared.set(tagged);
    expect(b.hs.handle(shared.subarray(0, tagged.length), HOOK_PRE_ROUTING, 0, new Uint8Array(65536)).verdict).toBe(VERDICT_REPEAT);
    shared.fill(0xa5); // the next batch
    const synAckOut = run(b, seg(B_ADDR, A_ADDR, 80, 41003, 72_000, 71_001, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING);
    expect(run(a, synAckOut.bytes, HOOK_PRE_ROUTING, markForPuIndex(1)).reason).toBe('ok');
  });

  describe('property 1: authenticity', () => {
    it('a host without the PSK cannot make a peer accept its labels', async () => {
      const mallory = makeHost('mallory', createSecret());
      await mallory.addPu(1, ['app=nginx']);
      mallory.hs.setHostStaticKeys?.([mallory.staticKey]);
      const syn = seg(M_ADDR, B_ADDR, 42000, 80, 1, 0, TCP_SYN);
      const forged = run(mallory, syn, HOOK_POST_ROUTING, markForPuIndex(1));
      const r = run(b, forged.bytes, HOOK_PRE_ROUTING);
      expect(r).toMatchObject({ verdict: VERDICT_ACCEPT, mark: REJECT_BIT, reason: 'bad-signature' });
      expect(b.flows.at(-1)).toMatchObject({ verdict: 'reject', reason: 'bad-signature' });
    });

    it('a token whose labels were edited fails its signature', () => {
      const syn = seg(A_ADDR, B_ADDR, 42001, 80, 1, 0, TCP_SYN);
      const tagged = run(a, syn, HOOK_POST_ROUTING, markForPuIndex(2)).bytes;
      // Flip a byte in the middle of the token's payload part.
      const edited = tagged.slice();
      const p = tcp(edited);
      edited[p.payloadOffset + 60] ^= 0x01;
      const fixed = fromAddress(edited, A_ADDR); // recompute checksums like an attacker would
      expect(run(b, fixed, HOOK_PRE_ROUTING).reason).toMatch(/bad-signature|malformed/);
    });
  });

  describe('property 2: no replay', () => {
    it('a SYN replayed from a third address is refused in silence by the strike register (the proof leaves the tuple out, for NAT)', () => {
      const h = handshake(a, b, { sport: 43000, isnC: 11_000, isnS: 12_000 });
      expect(h.synAckIn.reason).toBe('ok');
      const r = run(b, fromAddress(h.synOut.bytes, M_ADDR), HOOK_PRE_ROUTING);
      expect(r).toMatchObject({ verdict: VERDICT_DROP, reason: 'replay' });
      expect(b.flows.at(-1)).toMatchObject({ reason: 'replay' });
    });

    it('a SYN replayed verbatim while its handshake is remembered is that handshake: a SYN-ACK with a new ISN (the stack\'s answer once the connection is gone) is refused', () => {
      const h = handshake(a, b, { sport: 43001, isnC: 31_000, isnS: 32_000 });
      expect(h.synIn.reason).toBe('ok');
      // A network duplicate during the handshake: the same handshake, answered the same way.
      expect(run(b, h.synOut.bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
      expect(run(b, h.synAck, HOOK_POST_ROUTING)).toMatchObject({ mark: OP_CLEAR_SERVER_PENDING, reason: 'ok' });
      // A replay after the connection finished: the server's stack opens a new request with a
      // new ISN, and that SYN-ACK is dropped: nothing authorized, nothing sent.
      const late = seg(B_ADDR, A_ADDR, 80, 43001, 99_000, 31_001, TCP_SYN | TCP_ACK);
      expect(run(b, late, HOOK_POST_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, mark: -1, reason: 'replay' });
    });

    it('a proof older than the freshness window is stale; one made before the server started is refused in silence', async () => {
      let t = Date.now();
      const late = makeHost('host-b', psk, {}, { now: () => t });
      await late.addPu(1, ['app=nginx'], 80);
      late.hs.setHostStaticKeys?.([b.staticKey]);
      // A client new to this server sends its token in full (the server holds no reference).
      const c = makeHost('host-a', psk);
      await c.addPu(1, ['app=nginx']);
      const syn = run(c, seg(A_ADDR, B_ADDR, 43003, 80, 51_000, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
      t += 60_000;
      expect(run(late, syn, HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'stale' });
      // A server that started after the proof was made (a restart inside the window): it cannot
      // know what its previous run saw, so the proof is refused; dropped, the client's next
      // retransmission carries a fresh proof.
      const restarted = makeHost('host-b', psk, {}, { startedAt: Date.now() });
      await restarted.addPu(1, ['app=nginx'], 80);
      restarted.hs.setHostStaticKeys?.([b.staticKey]);
      const fresh = run(c, seg(A_ADDR, B_ADDR, 43004, 80, 52_000, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
      expect(run(restarted, fresh, HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'restarted' });
      expect(restarted.flows.at(-1)).toMatchObject({ verdict: 'reject', reason: 'restarted' });
    });

    it('a full strike register refuses new proofs (register-full), never accepts them', async () => {
      const tiny = makeHost('host-b', psk, {}, { v2: { registerEntries: 4 } });
      await tiny.addPu(1, ['app=nginx'], 80);
      tiny.hs.setHostStaticKeys?.([b.staticKey]);
      const c = makeHost('host-a', psk);
      await c.addPu(1, ['app=nginx']);
      const reasons: string[] = [];
      for (let i = 0; i < 8; i++) {
        const syn = run(c, seg(A_ADDR, B_ADDR, 43100 + i, 80, 60_000 + i, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
        reasons.push(run(tiny, syn, HOOK_PRE_ROUTING).reason);
      }
      expect(reasons.slice(0, 4)).toEqual(['ok', 'ok', 'ok', 'ok']);
      expect(reasons.slice(4)).toEqual(['register-full', 'register-full', 'register-full', 'register-full']);
      expect(tiny.hs.stats().registerFull).toBe(4);
    });
  });

  describe('property 3: mutual authorization', () => {
    it('a SYN-ACK whose token was changed on the path is refused and becomes a reset for the client', async () => {
      // A client new to b: b's SYN-ACK carries its token in full.
      const c = makeHost('host-a', psk);
      await c.addPu(1, ['app=nginx']);
      const syn = seg(A_ADDR, B_ADDR, 44000, 80, 500, 0, TCP_SYN);
      expect(run(b, run(c, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
      const synAck = run(b, seg(B_ADDR, A_ADDR, 80, 44000, 600, 501, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING).bytes;
      const tampered = synAck.slice();
      const p = tcp(tampered);
      tampered[p.payloadOffset + 120] ^= 0x04;
      expect(p.payloadLength).toBeGreaterThan(200);
      const r = run(c, fromAddress(tampered, B_ADDR), HOOK_PRE_ROUTING, markForPuIndex(1));
      expect(r.reason).toMatch(/bad-signature|malformed/);
      const rst = tcp(r.bytes);
      expect(rst.flags & (TCP_RST | TCP_ACK)).toBe(TCP_RST | TCP_ACK);
      expect(rst.payloadLength).toBe(0);
    });

    it('a SYN-ACK with a valid token but a MAC not bound to this connection is refused (bad-mac)', () => {
      // The server's genuine SYN-ACK for another connection, re-addressed to this one.
      const other = handshake(a, b, { sport: 44001, isnC: 700, isnS: 800 });
      expect(other.synAckIn.reason).toBe('ok');
      const syn = seg(A_ADDR, B_ADDR, 44002, 80, 900, 0, TCP_SYN);
      run(b, run(a, syn, HOOK_POST_ROUTING, markForPuIndex(1)).bytes, HOOK_PRE_ROUTING);
      const p = tcp(other.synAckOut.bytes);
      const moved = build({ family: 4, src: B_ADDR, dst: A_ADDR, sport: 80, dport: 44002, seq: 1234, ack: 901, flags: TCP_SYN | TCP_ACK, window: 65160, options: other.synAckOut.bytes.slice(p.tcpOffset + 20, p.tcpOffset + p.tcpHeaderLength), payload: other.synAckOut.bytes.slice(p.payloadOffset, p.payloadOffset + p.payloadLength) });
      expect(run(a, moved, HOOK_PRE_ROUTING, markForPuIndex(1)).reason).toBe('bad-mac');
    });

    it('a SYN-ACK without any token answering a PU is refused (the peer is not a tessera host)', () => {
      const syn = seg(A_ADDR, B_ADDR, 44003, 80, 1500, 0, TCP_SYN);
      run(a, syn, HOOK_POST_ROUTING, markForPuIndex(1));
      const plain = seg(B_ADDR, A_ADDR, 80, 44003, 1600, 1501, TCP_SYN | TCP_ACK);
      const r = run(a, plain, HOOK_PRE_ROUTING, markForPuIndex(1));
      expect(r.reason).toBe('missing-token');
      expect(tcp(r.bytes).flags & TCP_RST).toBe(TCP_RST);
    });
  });

  describe('property 4: freshness', () => {
    it('an expired token is refused with reason expired', async () => {
      const old = makeHost('host-old', psk);
      const pu = await old.addPu(1, ['app=nginx']);
      old.pus.set(1, { ...pu, tokens: [await issue(old.issuer, pu.id, ['app=nginx'], -7200, 600)] });
      const tagged = run(old, seg(M_ADDR, B_ADDR, 45000, 80, 1, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
      expect(run(b, tagged, HOOK_PRE_ROUTING).reason).toBe('expired');
    });
  });

  describe('property 5: bounded state', () => {
    it('a flood of valid SYNs never grows the per-flow state past its bound', async () => {
      const small = makeHost('host-s', psk, { stateEntries: 64 });
      await small.addPu(1, ['app=nginx'], 80);
      const tagged = run(a, seg(A_ADDR, B_ADDR, 46000, 80, 1, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes;
      for (let i = 0; i < 5000; i++) {
        const p = tcp(tagged);
        const copy = build({ family: 4, src: Uint8Array.of(10, 213, 9, 100 + (i % 100)), dst: B_ADDR, sport: 1024 + i, dport: 80, seq: i, ack: 0, flags: TCP_SYN, window: 64240, options: tagged.slice(p.tcpOffset + 20, p.tcpOffset + p.tcpHeaderLength), payload: tagged.slice(p.payloadOffset, p.payloadOffset + p.payloadLength) });
        run(small, copy, HOOK_PRE_ROUTING);
      }
      expect(small.hs.stats().serverState).toBeLessThanOrEqual(64);
      expect(small.hs.stats().packets).toBe(5000);
    });
  });

  describe('property 6: key rotation', () => {
    it('handshakes in flight complete when either side rotates its token mid-way', async () => {
      const c = makeHost('host-c', psk);
      const d = makeHost('host-d', psk);
      DIRECTORY.set('10.213.9.1', c.staticKey.publicRaw);
      DIRECTORY.set('10.213.9.2', d.staticKey.publicRaw);
      try {
        const cpu = await c.addPu(1, ['app=nginx']);
        const dpu = await d.addPu(1, ['app=nginx'], 80);
        const synOut = run(c, seg(A_ADDR, B_ADDR, 47000, 80, 10, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1));
        expect(run(d, synOut.bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
        await c.rotate(cpu); // client rotates between SYN and SYN-ACK
        await d.rotate(dpu); // and the server too
        const synAckOut = run(d, seg(B_ADDR, A_ADDR, 80, 47000, 20, 11, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING);
        expect(synAckOut.reason).toBe('ok');
        expect(run(c, synAckOut.bytes, HOOK_PRE_ROUTING, markForPuIndex(1)).reason).toBe('ok');
        // New connections use the new tokens and still succeed.
        const h = handshake(c, d, { sport: 47001 });
        expect(h.synAckIn.reason).toBe('ok');
      } finally {
        DIRECTORY_SET(a);
        DIRECTORY_SET(b);
      }
    });
  });

  describe('policy and peers without tessera', () => {
    it('different labels are refused on the server with a reset', () => {
      const syn = seg(A_ADDR, B_ADDR, 48000, 80, 1, 0, TCP_SYN);
      const r = run(b, run(a, syn, HOOK_POST_ROUTING, markForPuIndex(2)).bytes, HOOK_PRE_ROUTING);
      expect(r).toMatchObject({ verdict: VERDICT_ACCEPT, mark: REJECT_BIT, reason: 'policy' });
      expect(tcp(r.bytes).payloadLength).toBe(0); // block stripped so the reset acks the SYN exactly
      expect(b.flows.at(-1)).toMatchObject({ verdict: 'reject', reason: 'policy', remoteLabels: ['app=other'], localLabels: ['app=nginx'] });
    });

    it('an untagged SYN to a PU port is refused; to an unprotected port it passes', () => {
      expect(run(b, seg(M_ADDR, B_ADDR, 48001, 80, 1, 0, TCP_SYN), HOOK_PRE_ROUTING)).toMatchObject({ mark: REJECT_BIT, reason: 'missing-token' });
      expect(run(b, seg(M_ADDR, B_ADDR, 48002, 22, 1, 0, TCP_SYN), HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_ACCEPT, mark: -1, reason: 'no-pu' });
    });

    it('reject mode drop refuses silently', async () => {
      const quiet = makeHost('host-q', psk, { rejectMode: 'drop' });
      await quiet.addPu(1, ['app=nginx'], 80);
      expect(run(quiet, seg(M_ADDR, B_ADDR, 48003, 80, 1, 0, TCP_SYN), HOOK_PRE_ROUTING).verdict).toBe(VERDICT_DROP);
    });

    it('a token that would push the packet over the MTU budget is not sent', async () => {
      const tiny = makeHost('host-t', psk, { maxPacketLength: 200 });
      await tiny.addPu(1, ['app=nginx']);
      expect(run(tiny, seg(A_ADDR, B_ADDR, 48005, 80, 1, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1))).toMatchObject({ verdict: VERDICT_DROP, reason: 'too-large' });
    });

    it('a tagged SYN with a bad checksum is dropped before it could be rewritten into a valid one', () => {
      const tagged = run(a, seg(A_ADDR, B_ADDR, 48006, 80, 1, 0, TCP_SYN), HOOK_POST_ROUTING, markForPuIndex(1)).bytes.slice();
      tagged[tagged.length - 30] ^= 0x10; // corrupt one payload byte in transit, checksum unchanged
      expect(run(b, tagged, HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'bad-packet' });
    });

    it('malformed packets on ingress are dropped, never thrown', () => {
      for (const junk of [new Uint8Array(0), Uint8Array.of(0x45), new Uint8Array(60).fill(0xff)]) {
        expect(run(b, junk, HOOK_PRE_ROUTING)).toMatchObject({ verdict: VERDICT_DROP, reason: 'bad-packet' });
      }
    });
  });
});
