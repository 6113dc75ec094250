// Two namespace hosts on two subnets with a router namespace between them: what the loss
// test drops packets in (iptables FORWARD with -m statistic) and where an on-path attacker
// sits. Each host gets a Tessera daemon through createCluster's extraHosts; the namespaces
// are ours and removed by destroy(), also after a failure half way.

import { createCluster, existingNsHost, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { killAndWait, run, mustRun, type NsHost } from '../../scripts/lib/netns.js';

export interface Routed {
  cluster: Cluster;
  a: TesseraHost;
  b: TesseraHost;
  /** The router between them (no daemon). */
  router: NsHost;
  destroy(): Promise<void>;
}

/**
 * Hosts `${prefix}-a` (10.213.<netA>.2) and `${prefix}-b` (10.213.<netB>.2), router
 * `${prefix}-r` (.1 on both). `switchSubnet` is the cluster's (unused) switch subnet.
 */
export async function createRouted(o: { prefix: string; netA: number; netB: number; trust?: 'ca' | 'psk'; daemonArgs?: string[]; start?: boolean }): Promise<Routed> {
  const r = `${o.prefix}-r`;
  const names = { a: `${o.prefix}-a`, b: `${o.prefix}-b` };
  const nets = { a: o.netA, b: o.netB };
  const created: string[] = [];
  const removeNs = async (): Promise<void> => {
    for (const ns of created.reverse()) await run(['ip', 'netns', 'del', ns]);
  };
  try {
    for (const ns of [r, names.a, names.b]) {
      await mustRun(['ip', 'netns', 'add', ns]);
      created.push(ns);
      await mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    for (const side of ['a', 'b'] as const) {
      const ns = names[side];
      const net = `10.213.${nets[side]}`;
      await mustRun(['ip', '-n', r, 'link', 'add', `r${side}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await mustRun(['ip', '-n', r, 'addr', 'add', `${net}.1/24`, 'dev', `r${side}`]);
      await mustRun(['ip', '-n', r, 'link', 'set', `r${side}`, 'up']);
      await mustRun(['ip', '-n', ns, 'addr', 'add', `${net}.2/24`, 'dev', 'eth0']);
      await mustRun(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      await mustRun(['ip', '-n', ns, 'route', 'add', 'default', 'via', `${net}.1`]);
    }
    await mustRun(['ip', 'netns', 'exec', r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  } catch (err) {
    await removeNs();
    throw err;
  }
  const hostA = existingNsHost('a', names.a, `10.213.${o.netA}.2`);
  const hostB = existingNsHost('b', names.b, `10.213.${o.netB}.2`);
  const router = existingNsHost('r', r, `10.213.${o.netA}.1`);
  let cluster: Cluster;
  try {
    cluster = await createCluster({ prefix: o.prefix, hosts: [], subnet: o.netA, trust: o.trust ?? 'ca', daemonArgs: o.daemonArgs, extraHosts: [hostA, hostB], start: o.start });
  } catch (err) {
    await removeNs();
    throw err;
  }
  return {
    cluster,
    a: cluster.host('a'),
    b: cluster.host('b'),
    router,
    async destroy() {
      await Promise.all([...router.children].map((c) => killAndWait(c)));
      await cluster.destroy();
      await removeNs();
    },
  };
}
