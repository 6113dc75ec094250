// The two pieces that protect a container with its own network namespace, without Docker:
// the addon's `netns` option (a worker thread binds a queue in another namespace and stays in
// its own), and the one-PU namespace ruleset (every SYN leaving is tagged with the PU index,
// every SYN arriving is queued, whatever the port), installed through `nsenter --net`. Two
// namespace hosts: `s` plays the container, `c` a peer.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, isRoot, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { REPO } from '../../scripts/lib/cluster.js';
import { buildRuleset, createCommandRunner, createReconciler } from '../../src/rules/index.js';
import { PU_INDEX_MASK, markForPuIndex } from '../../src/marks.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'namespace queue (needs root)', 'integration tests need root: run as root');

interface Seen {
  hook: number;
  mark: number;
  src: string;
  dst: string;
  dport: number;
  flags: number;
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readlinkSync } = require('node:fs');
const n = require(workerData.addon);
const before = readlinkSync('/proc/thread-self/ns/net');
let q;
const queues = [];
try {
  q = new n.Queue({ queueNum: workerData.queueNum, netns: workerData.netns }, (count) => {
    for (let i = 0; i < count; i++) {
      const b = i * 8, id = q.meta[b], off = q.meta[b + 1];
      const p = q.data.subarray(off, off + q.meta[b + 2]);
      const ihl = (p[0] & 15) * 4;
      parentPort.postMessage({ ev: 'packet', hook: q.meta[b + 4], mark: q.meta[b + 3],
        src: p.subarray(12, 16).join('.'), dst: p.subarray(16, 20).join('.'),
        dport: p.readUInt16BE(ihl + 2), flags: p[ihl + 13] });
      q.verdict(id, n.VERDICT.ACCEPT);
    }
  });
  queues.push(q);
} catch (e) {
  parentPort.postMessage({ ev: 'error', message: e.message, code: e.code });
}
let bad = null;
try { new n.Queue({ queueNum: workerData.queueNum + 1, netns: '/nonexistent/netns' }, () => {}); } catch (e) { bad = { message: e.message, code: e.code }; }
parentPort.postMessage({ ev: 'ready', before, after: readlinkSync('/proc/thread-self/ns/net'), bad });
parentPort.on('message', (m) => { if (m === 'stop') { for (const x of queues) x.close(); parentPort.close(); } });
`;

describe.runIf(isRoot)('a queue and a one-PU ruleset inside another network namespace', () => {
  let topo: Topology;
  let s: NsHost, c: NsHost;
  let worker: Worker;
  const seen: Seen[] = [];
  let ready: { before: string; after: string; bad: { message: string; code: string } | null };
  const QUEUE = 3;
  const INDEX = 7;
  const nsRunner = () => createCommandRunner({ prefix: ['nsenter', `--net=/run/netns/${s.ns}`] });

  beforeAll(async () => {
    topo = await createTopology({ prefix: uniquePrefix('nq'), hosts: ['s', 'c'], subnet: 62 });
    [s, c] = [topo.host('s'), topo.host('c')];
    worker = new Worker(WORKER, { eval: true, workerData: { addon: join(REPO, 'native', 'index.cjs'), queueNum: QUEUE, netns: `/run/netns/${s.ns}` } });
    ready = await new Promise((resolve, reject) => {
      worker.on('message', (m: { ev: string } & Record<string, unknown>) => {
        if (m.ev === 'packet') seen.push(m as unknown as Seen);
        else if (m.ev === 'ready') resolve(m as unknown as typeof ready);
        else if (m.ev === 'error') reject(new Error(String(m.message)));
      });
      worker.on('error', reject);
    });
  }, 60_000);

  afterAll(async () => {
    worker?.postMessage('stop');
    await worker?.terminate();
    await topo?.destroy();
  });

  it('binds in the other namespace while the thread stays in its own; a bad path is TESSERA_ERR_QUEUE', async () => {
    expect(ready.after).toBe(ready.before);
    expect(ready.before).toBe(readlinkSync('/proc/self/ns/net'));
    expect(ready.before).not.toBe(`net:[${statSync(`/run/netns/${s.ns}`).ino}]`);
    expect(ready.bad?.code).toBe('TESSERA_ERR_QUEUE');
    expect(ready.bad?.message).toMatch(/\/nonexistent\/netns/);
    // The queue is bound in s's namespace (first column: queue number).
    const queues = (await s.exec(['cat', '/proc/net/netfilter/nfnetlink_queue'])).stdout;
    expect(queues.split('\n').some((l) => l.trim().split(/\s+/)[0] === String(QUEUE))).toBe(true);
  });

  it('the namespace ruleset installs through nsenter and reads back unchanged', async () => {
    const reconciler = createReconciler({ runner: nsRunner(), families: ['ipv4'] });
    const spec = { queue: { num: QUEUE, count: 1, bypass: false }, pus: [], serverPorts: [], namespacePu: INDEX };
    expect((await reconciler.apply(buildRuleset(spec))).changed).toBe(true);
    expect((await reconciler.apply(buildRuleset(spec))).changed).toBe(false);
    const saved = (await s.exec(['iptables-save', '-t', 'mangle'])).stdout;
    expect(saved).toContain(`-A TESSERA-PU-IN -j TESSERA-PU-PORT`);
    expect(saved).toContain(`-A TESSERA-PU-PORT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num ${QUEUE}`);
    expect(saved).toContain(`-A TESSERA-PU-OUT -j MARK --set-xmark 0x${markForPuIndex(INDEX).toString(16)}/0x${PU_INDEX_MASK.toString(16)}`);
    expect(() => buildRuleset({ ...spec, serverPorts: [80] })).toThrow(/namespacePu/);
  });

  it('every SYN into the namespace is queued whatever the port, and every SYN out carries the PU index', async () => {
    const server = s.spawn(['busybox', 'nc', '-l', '-p', '4711']);
    try {
      await new Promise((r) => setTimeout(r, 300));
      // Inbound to a port nobody registered: still queued (the namespace is the PU). This
      // queue accepts without a verdict op, so the flow is never authorized and its later
      // packets are refused (default deny): the connection itself does not complete.
      await c.exec(['busybox', 'sh', '-c', `echo hi | timeout 2 busybox nc ${s.addr} 4711`], { timeoutMs: 8000 });
      const inbound = seen.find((p) => p.dport === 4711 && p.flags === 0x02);
      expect(inbound, JSON.stringify(seen)).toBeDefined();
      expect(inbound!.hook).toBe(1); // LOCAL_IN: judged after DNAT
      expect(inbound!.dst).toBe(s.addr);
      // Outbound from the namespace to anywhere: tagged with the PU index, no cgroup needed.
      await s.exec(['busybox', 'sh', '-c', `timeout 2 busybox nc ${c.addr} 4712 </dev/null`], { timeoutMs: 5000 });
      const outbound = seen.find((p) => p.dport === 4712 && p.flags === 0x02);
      expect(outbound, JSON.stringify(seen)).toBeDefined();
      expect(outbound!.hook).toBe(4); // POSTROUTING
      expect(outbound!.mark & PU_INDEX_MASK).toBe(markForPuIndex(INDEX));
    } finally {
      server.kill('SIGKILL');
    }
  });
});
