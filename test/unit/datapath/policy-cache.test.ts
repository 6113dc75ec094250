// The handshake caches policy decisions between two verified endpoints (handshake.ts ask):
// a cached allow must never outlive the policy that gave it, and the cache is per direction
// and port. Real packets through two in-process hosts.
import { describe, expect, it } from 'vitest';
import { VERDICT_REPEAT } from '../../../src/datapath/handshake/handshake.js';
import { createSecret } from '../../../src/identity/index.js';
import { REJECT_BIT } from '../../../src/marks.js';
import { loadPolicy } from '../../../src/policy/index.js';
import { handshake, hostPair } from './handshake-helpers.js';

const DENY_NGINX = ['version: 1', 'rules:', '  - id: no-nginx', '    from: { app: nginx }', '    to: { app: nginx }', '    action: reject'].join('\n');

describe('policy decisions cached per pair of verified endpoints', () => {
  it('an allow cached on both hosts stops at once when the policy changes, and comes back with it', async () => {
    const { a, b } = await hostPair(createSecret());
    for (let i = 0; i < 3; i++) {
      const h = handshake(a, b, { sport: 41000 + i, isnC: 1000 + i * 100 });
      expect(h.synIn.reason).toBe('ok');
      expect(h.synAckIn.reason).toBe('ok');
    }
    const allow = b.policy;
    b.policy = loadPolicy(DENY_NGINX);
    const refused = handshake(a, b, { sport: 41010, isnC: 9000 });
    expect(refused.synIn).toMatchObject({ reason: 'policy', mark: REJECT_BIT });
    expect(b.flows.at(-1)).toMatchObject({ verdict: 'reject', reason: 'policy', ruleId: 'no-nginx' });
    // The client's own policy (egress) is cached too: the server allows again, the client refuses.
    b.policy = allow;
    a.policy = loadPolicy(DENY_NGINX);
    const egress = handshake(a, b, { sport: 41011, isnC: 9100 });
    expect(egress.synIn.reason).toBe('ok');
    expect(egress.synAckIn.reason).toBe('policy');
    a.policy = allow;
    const again = handshake(a, b, { sport: 41012, isnC: 9200 });
    expect(again.synIn.verdict).toBe(VERDICT_REPEAT);
    expect(again.synAckIn.reason).toBe('ok');
  });
});
