import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/daemon/metrics.js';

const base = { workerStats: () => [], puCount: () => 0, ready: () => true };

describe('fleet metrics', () => {
  it('expose the applied revision, staleness, sync state and refusals with --cluster', async () => {
    const m = createMetrics({ ...base, fleet: () => ({ policyRevision: 1796528000, staleSeconds: 2.5, synced: false, refused: 3 }) });
    const text = await m.text();
    expect(text).toMatch(/^tessera_fleet_policy_revision 1796528000$/m);
    expect(text).toMatch(/^tessera_fleet_stale_seconds 2\.5$/m);
    expect(text).toMatch(/^tessera_fleet_synced 0$/m);
    expect(text).toMatch(/^tessera_fleet_refused_bundles_total 3$/m);
  });
  it('have no samples without a fleet', async () => {
    const text = await createMetrics({ ...base, fleet: () => null }).text();
    expect(text).not.toMatch(/^tessera_fleet_\w+ \d/m);
  });
});
