// The worker's x25519 cache metrics (crypto.ts verifierStats().x25519) count protocol v2's
// pair keys too: one derivation (a miss: X25519 + HKDF) per peer token and host key on each
// side, then a hit per connection. They read 0 for TCP before (only UDP's agreement counted).
import { describe, expect, it } from 'vitest';
import { createHandshakeCrypto } from '../../../src/datapath/crypto.js';
import { createSecret } from '../../../src/identity/index.js';
import { handshake, hostPair } from './handshake-helpers.js';

describe('x25519 cache metrics with the TCP handshake', () => {
  it('count one derivation per side, then hits for every later connection', async () => {
    const psk = createSecret();
    const ca = createHandshakeCrypto({ mode: 'psk', secret: psk }, createSecret(), 30);
    const cb = createHandshakeCrypto({ mode: 'psk', secret: psk }, createSecret(), 30);
    const { a } = await hostPair(psk, { handshakeVerifier: ca.tokens });
    const { b } = await hostPair(psk, { handshakeVerifier: cb.tokens });
    // Two pairs, one verifier each: host a of the first, host b of the second (the second
    // pair's keys are the directory's now, which is all a's SYNs need).
    expect(ca.verifierStats().x25519).toMatchObject({ hits: 0, misses: 0 });
    for (let i = 0; i < 5; i++) {
      const h = handshake(a, b, { sport: 42000 + i, isnC: 7000 + i * 10 });
      expect(h.synAckIn.reason).toBe('ok');
    }
    // Client: a derivation at the first SYN (its key for b's host key), hits after; server likewise at its first SYN in.
    expect(ca.verifierStats().x25519).toMatchObject({ misses: 1, hits: 4 });
    expect(cb.verifierStats().x25519).toMatchObject({ misses: 1, hits: 4 });
  });
});
