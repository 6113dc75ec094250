// The client keeps the proofs of a connection's SYN transmissions for its SYN-ACK (the server
// may have seen any of them): the first inline, retransmissions beside it, the newest 8 when
// there were more. A SYN-ACK answering a kept proof authorizes; one answering a dropped
// proof is refused. Real blocks through two engines.
import { describe, expect, it } from 'vitest';
import { connect, makeWorld, tuple } from './helpers.js';

describe('client proofs kept per connection', () => {
  it('a SYN-ACK may answer any of the newest 8 transmissions, not an older one', async () => {
    const w = await makeWorld('psk');
    // First contact (the retry exchange) out of the way.
    expect(connect(w, tuple(undefined, undefined, 40100), 100).at(-1)!.synAckIn?.kind).toBe('proof');
    for (const [sent, answered, kind] of [
      [1, 0, 'proof'],
      [3, 0, 'proof'],
      [3, 2, 'proof'],
      [8, 0, 'proof'],
      [10, 2, 'proof'],
      [10, 9, 'proof'],
      [10, 1, 'refuse'],
    ] as const) {
      const t = tuple(undefined, undefined, 41000 + sent * 16 + answered);
      const isnC = 5000 + sent * 16 + answered;
      const syns: Uint8Array[] = [];
      for (let i = 0; i < sent; i++) {
        const out = new Uint8Array(4096);
        const r = w.client.engine.clientSynOut(t, isnC, w.clientPu, out);
        expect(r.kind).toBe('attach');
        syns.push(out.slice(0, r.kind === 'attach' ? r.length : 0));
        w.clock.ms += 10;
      }
      expect(w.server.engine.serverSynIn(t, isnC, syns[answered]!).kind).toBe('proof');
      const out = new Uint8Array(4096);
      const sa = w.server.engine.serverSynAckOut(t, isnC, isnC ^ 1, w.serverPu, out);
      expect(sa.kind).toBe('proof');
      const r = w.client.engine.clientSynAckIn(t, isnC, isnC ^ 1, out.slice(0, sa.kind === 'proof' ? sa.length : 0));
      expect([sent, answered, r.kind]).toEqual([sent, answered, kind]);
      if (r.kind === 'refuse') expect(r.reason).toBe('bad-mac');
    }
  });
});
