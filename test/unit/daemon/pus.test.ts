// What `tessera status` reports as a PU's ports: only those whose queue rules are installed.
// A client that waits for a port there (the demo, the benchmark, an operator's script) must
// not reach it in the window between the port scan seeing it and the rule sync.
import { describe, expect, it } from 'vitest';
import { PuRegistry } from '../../../src/daemon/pus.js';
import { createSecret, createTokenIssuer } from '../../../src/identity/index.js';
import type { NetCls } from '../../../src/rules/index.js';

describe('PU registry: reported ports', () => {
  it('lists a port in info() only once the daemon marked it protected', async () => {
    let changes = 0;
    const netcls = { create: async () => undefined, remove: async () => undefined, cgroup2Ref: async () => undefined } as unknown as NetCls;
    const registry = new PuRegistry({
      netcls,
      issuer: createTokenIssuer({ mode: 'psk', hostId: 'host-t', psk: createSecret() }),
      tokenTtlSeconds: 600,
      onChange: () => changes++,
    });
    const pu = await registry.create({ name: 'web', kind: 'process', labels: ['app=web'] });
    const before = changes;
    expect(registry.setObserved(pu, [1234], [8080])).toBe(true);
    expect(changes).toBe(before + 1); // the scan's change asks for a rule sync...
    expect(registry.info(pu).ports).toEqual([]); // ...and until it is applied, status shows no port
    pu.protectedPorts = pu.ports; // what the daemon's sync() does after the rules are in
    expect(registry.info(pu).ports).toEqual([8080]);
  });
});
