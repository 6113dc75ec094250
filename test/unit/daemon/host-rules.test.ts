import { describe, expect, it } from 'vitest';
import { hostRulesetSpec, type HostPu } from '../../../src/daemon/host-rules.js';

const queue = { num: 0, count: 1, bypass: false };
const ref = (cgroup: string) => ({ path: `unified/${cgroup}`, cgroup, level: cgroup.split('/').length });

describe('hostRulesetSpec', () => {
  const pus: HostPu[] = [
    { index: 1, classid: 11, ports: [8080, 80], cgroup2: ref('tessera/proc-a') },
    { index: 2, classid: 12, ports: [5432], cgroup2: ref('docker/gone') },
    { index: 3, classid: 13, ports: [22] },
    { index: 4, classid: 14, ports: [9000], netns: '/proc/1/ns/net' },
  ];
  const spec = hostRulesetSpec(pus, queue);

  it('names every cgroup v2 reference (the reconciler leaves out those gone)', () => {
    expect(spec.pus).toEqual([
      { index: 1, classid: 11, cgroup2: ref('tessera/proc-a') },
      { index: 2, classid: 12, cgroup2: ref('docker/gone') },
      { index: 3, classid: 13 },
    ]);
  });

  it("judges by port only PUs the lookup cannot name, and guards every host PU's ports", () => {
    expect(spec.serverPorts).toEqual([22]);
    expect(spec.guardPorts).toEqual([22, 80, 5432, 8080]);
  });

  it('leaves containers with their own namespace to the rules in that namespace', () => {
    expect(spec.pus.map((p) => p.index)).not.toContain(4);
    expect(spec.guardPorts).not.toContain(9000);
  });
});
