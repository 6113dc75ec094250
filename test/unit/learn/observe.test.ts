// The worker's hook: every deciding flow record the handshake builds reaches the thread's edge
// table (src/learn/observer.ts), including records nobody forwards; refusals do not.
import { describe, expect, it } from 'vitest';
import { createSecret } from '../../../src/identity/index.js';
import { drainObserved } from '../../../src/learn/observer.js';
import { handshake, hostPair } from '../datapath/handshake-helpers.js';

describe('observation from the handshake', () => {
  it('both ends of one real handshake land in one edge (server port, both views), a refusal in none', async () => {
    drainObserved();
    const psk = createSecret();
    // Each host knows the other's static key (the fleet's directory), so no first-contact retry.
    const { a, b } = await hostPair(psk);
    await a.addPu(2, ['app=other']);
    handshake(a, b, { sport: 40001 });
    handshake(a, b, { sport: 40002, clientIndex: 2 }); // refused by the default policy (labels differ)
    expect(b.flows.some((f) => f.verdict === 'reject')).toBe(true);
    const t = drainObserved()!;
    expect(t.edges).toHaveLength(1);
    expect(t.edges[0]).toMatchObject({ client: { labels: ['app=nginx'] }, server: { labels: ['app=nginx'] }, port: 80, protocol: 'tcp', ingress: 1, egress: 1, clientPus: ['host-a-pu1'], serverPus: ['host-b-pu1'] });
    expect(drainObserved()).toBeNull();
  });
});
