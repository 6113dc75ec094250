// The native NFQUEUE addon against the real kernel: two namespaces (client c, server s),
// NFQUEUE rules in the server namespace, queue consumers in worker threads of a helper
// process that runs inside the server namespace (a queue belongs to the namespace of the
// socket that binds it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { createTopology, isRoot, killAndWait, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';

const helper = (name: string): string => fileURLToPath(new URL(`../helpers/${name}`, import.meta.url));
const HOST_SCRIPT = helper('native-queue-host.mjs');
const TCP_SCRIPT = helper('native-tcp.mjs');

interface HostEvent {
  wid?: string;
  ev: string;
  [k: string]: unknown;
}

interface PacketEvent extends HostEvent {
  id: number;
  length: number;
  mark: number;
  hook: number;
  indev: number;
  outdev: number;
  hwProtocol: number;
  batchCount: number;
  head: string;
}

interface Action {
  verdict: 'ACCEPT' | 'DROP' | 'REPEAT' | 'NONE';
  mark?: number;
  setTos?: number;
}

/** The helper process in the server namespace, driven by JSON lines. */
class QueueHost {
  readonly events: HostEvent[] = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as HostEvent);
      } catch {
        this.events.push({ ev: 'garbage', line });
      }
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr?.on('data', (d: Buffer) => this.events.push({ ev: 'stderr', text: d.toString() }));
  }

  static async start(host: NsHost): Promise<QueueHost> {
    const h = new QueueHost(host.spawn(['node', HOST_SCRIPT], { env: { ...process.env, NQ_HOST_MAX_MS: '150000' } }));
    await h.waitFor((e) => e.ev === 'host-ready', 10_000, 'host-ready');
    return h;
  }

  send(cmd: object): void {
    this.child.stdin!.write(JSON.stringify(cmd) + '\n');
  }

  /** Resolves with the first event (old or new) matching pred. */
  async waitFor(pred: (e: HostEvent) => boolean, timeoutMs: number, what: string): Promise<HostEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-20))}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async startWorker(wid: string, queueNum: number, opts: { options?: object; plan?: { actions?: Action[]; default?: Action }; throwOnBatch?: boolean } = {}): Promise<HostEvent> {
    this.send({ cmd: 'start', wid, queueNum, ...opts });
    return this.waitFor((e) => e.wid === wid && (e.ev === 'ready' || e.ev === 'error' || e.ev === 'worker-error'), 10_000, `${wid} ready`);
  }

  packets(wid: string): PacketEvent[] {
    return this.events.filter((e): e is PacketEvent => e.wid === wid && e.ev === 'packet');
  }

  async closeWorker(wid: string): Promise<HostEvent> {
    this.send({ cmd: 'send', wid, msg: { cmd: 'close' } });
    return this.waitFor((e) => e.wid === wid && e.ev === 'closed', 5_000, `${wid} closed`);
  }

  async stop(): Promise<void> {
    try {
      this.send({ cmd: 'exit' });
    } catch {
      /* already gone */
    }
    await killAndWait(this.child, 2_000);
  }
}

interface ConnectResult {
  ok: boolean;
  ms: number;
  reply?: string;
  error?: string;
}

async function connect(from: NsHost, addr: string, port: number, timeoutMs: number): Promise<ConnectResult> {
  const r = await from.exec(['node', TCP_SCRIPT, 'connect', addr, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as ConnectResult;
  } catch {
    throw new Error(`connect helper said: ${r.stdout} ${r.stderr}`);
  }
}

async function must(host: NsHost, argv: string[]): Promise<string> {
  const r = await host.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${host.ns} failed: ${r.stderr}`);
  return r.stdout;
}

/** Packet count of the rule carrying `-m comment --comment <tag>`. */
async function counter(host: NsHost, family: 'iptables' | 'ip6tables', table: string, chain: string, tag: string): Promise<number> {
  const out = await must(host, [family, '-w', '-t', table, '-L', chain, '-n', '-v', '-x']);
  const line = out.split('\n').find((l) => l.includes(`/* ${tag} */`));
  if (!line) throw new Error(`no rule tagged ${tag} in ${table} ${chain}:\n${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** queue_dropped of each bound queue number, from the namespace's /proc/net/netfilter/nfnetlink_queue. */
async function queueDropped(host: NsHost, queues: number[]): Promise<Record<number, number>> {
  // Columns: queue number, peer port id, queue total, copy mode, copy range, queue dropped, ...
  const rows = (await must(host, ['cat', '/proc/net/netfilter/nfnetlink_queue'])).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  return Object.fromEntries(queues.map((q) => [q, rows.find((r) => r[0] === q)?.[5] ?? -1]));
}

/** Parses the IPv4 + TCP headers out of a hex packet head. */
function ipv4Tcp(headHex: string): { version: number; proto: number; src: string; dst: string; sport: number; dport: number; seq: number; flags: number; tos: number } {
  const b = Buffer.from(headHex, 'hex');
  const ihl = (b[0]! & 0x0f) * 4;
  return {
    version: b[0]! >> 4,
    tos: b[1]!,
    proto: b[9]!,
    src: [...b.subarray(12, 16)].join('.'),
    dst: [...b.subarray(16, 20)].join('.'),
    sport: b.readUInt16BE(ihl),
    dport: b.readUInt16BE(ihl + 2),
    seq: b.readUInt32BE(ihl + 4),
    flags: b[ihl + 13]!,
  };
}

const TCP_SYN = 0x02;
const PORTS = [7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008, 7009, 7010, 7011, 7012, 7013, 7014];

skipBecause(!isRoot, 'native NFQUEUE addon (integration)', 'integration tests need root: run as root (they create network namespaces and iptables rules)');

describe.runIf(isRoot)('native NFQUEUE addon (integration)', () => {
  let topo: Topology;
  let c: NsHost;
  let s: NsHost;
  let host: QueueHost;
  let server: ChildProcess;

  beforeAll(async () => {
    topo = await createTopology({ prefix: uniquePrefix('nq'), hosts: ['c', 's'], subnet: 20 + Math.floor(Math.random() * 10) });
    c = topo.host('c');
    s = topo.host('s');
    server = s.spawn(['node', TCP_SCRIPT, 'serve', ...PORTS.map(String)]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('tcp server did not start')), 10_000);
      createInterface({ input: server.stdout! }).on('line', (l) => {
        if (l === 'listening') {
          clearTimeout(t);
          resolve();
        }
      });
    });
    host = await QueueHost.start(s);
    // Baseline (no rule on this port), which also warms the neighbour caches.
    expect(await connect(c, s.addr, 7014, 5_000)).toMatchObject({ ok: true, reply: 'pong' });
  });

  afterAll(async () => {
    await host?.stop();
    await topo?.destroy();
  });

  it('delivers IPv4 and IPv6 packets on one queue with their metadata and bytes', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7001', '-j', 'NFQUEUE', '--queue-num', '1']);
    await must(s, ['ip6tables', '-w', '-t', 'mangle', '-A', 'OUTPUT', '-o', 'lo', '-p', 'tcp', '--syn', '--dport', '7001', '-j', 'NFQUEUE', '--queue-num', '1']);
    const ready = await host.startWorker('fields', 1);
    expect(ready.ev).toBe('ready');
    expect(ready.metaLength).toBe(64 * 8);

    const r = await connect(c, s.addr, 7001, 5_000);
    expect(r).toMatchObject({ ok: true, reply: 'pong' });
    const [p] = host.packets('fields');
    expect(p).toBeDefined();
    const eth0 = Number((await must(s, ['cat', '/sys/class/net/eth0/ifindex'])).trim());
    expect(p!.id).toBeGreaterThan(0);
    expect(p!.hook).toBe(0); // NF_INET_PRE_ROUTING
    expect(p!.hwProtocol).toBe(0x0800);
    expect(p!.indev).toBe(eth0);
    expect(p!.outdev).toBe(0);
    expect(p!.mark).toBe(0);
    expect(p!.length).toBeGreaterThanOrEqual(40);
    const h = ipv4Tcp(p!.head);
    expect(h).toMatchObject({ version: 4, proto: 6, src: c.addr, dst: s.addr, dport: 7001 });
    expect(h.flags & TCP_SYN).toBe(TCP_SYN);

    // IPv6 on the same queue: a locally generated SYN to [::1] in OUTPUT.
    const r6 = await connect(s, '::1', 7001, 5_000);
    expect(r6).toMatchObject({ ok: true, reply: 'pong' });
    const p6 = host.packets('fields').find((e) => e.hwProtocol === 0x86dd);
    expect(p6).toBeDefined();
    expect(p6!.hook).toBe(3); // NF_INET_LOCAL_OUT
    expect(p6!.outdev).toBe(1); // lo
    const b6 = Buffer.from(p6!.head, 'hex');
    expect(b6[0]! >> 4).toBe(6);
    expect(b6[6]).toBe(6); // next header TCP
    expect(b6.subarray(24, 40).equals(Buffer.from('00000000000000000000000000000001', 'hex'))).toBe(true);
    expect(b6.readUInt16BE(42)).toBe(7001);

    const closed = await host.closeWorker('fields');
    expect(closed.verdictAfterClose).toBe('TESSERA_ERR_QUEUE');
    const stats = closed.stats as Record<string, number>;
    expect(stats.received).toBeGreaterThanOrEqual(2);
    expect(stats.verdicts).toBe(stats.received);
    expect(stats.batches).toBeGreaterThanOrEqual(2);
    expect(stats.sendErrors).toBe(0);
  });

  it('a verdict mark and a rewritten payload reach the later rules', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7002', '-j', 'NFQUEUE', '--queue-num', '2']);
    await must(s, ['iptables', '-w', '-A', 'INPUT', '-p', 'tcp', '--syn', '--dport', '7002', '-m', 'mark', '--mark', '0x77', '-m', 'comment', '--comment', 'nq-mark']);
    await must(s, ['iptables', '-w', '-A', 'INPUT', '-p', 'tcp', '--syn', '--dport', '7002', '-m', 'dscp', '--dscp', '0x08', '-m', 'comment', '--comment', 'nq-dscp']);
    const ready = await host.startWorker('mark', 2, { plan: { actions: [{ verdict: 'ACCEPT', mark: 0x77 }, { verdict: 'ACCEPT', setTos: 0x20 }] } });
    expect(ready.ev).toBe('ready');

    expect(await connect(c, s.addr, 7002, 5_000)).toMatchObject({ ok: true, reply: 'pong' });
    expect(await counter(s, 'iptables', 'filter', 'INPUT', 'nq-mark')).toBe(1);
    expect(await counter(s, 'iptables', 'filter', 'INPUT', 'nq-dscp')).toBe(0);

    // Second SYN: TOS rewritten in place in the receive buffer (DSCP 8) with a fixed header checksum.
    expect(await connect(c, s.addr, 7002, 5_000)).toMatchObject({ ok: true, reply: 'pong' });
    expect(await counter(s, 'iptables', 'filter', 'INPUT', 'nq-dscp')).toBe(1);
    expect(await counter(s, 'iptables', 'filter', 'INPUT', 'nq-mark')).toBe(1);
    const pk = host.packets('mark');
    expect(pk).toHaveLength(2);
    expect(ipv4Tcp(pk[1]!.head).tos).toBe(0); // what the queue saw: the original
    await host.closeWorker('mark');
  });

  it('REPEAT with a mark runs the hook again and skips the queue the second time', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7003', '-m', 'comment', '--comment', 'nq-pass']);
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7003', '-m', 'mark', '!', '--mark', '0x1/0x1', '-j', 'NFQUEUE', '--queue-num', '3']);
    await must(s, ['iptables', '-w', '-A', 'INPUT', '-p', 'tcp', '--syn', '--dport', '7003', '-m', 'mark', '--mark', '0x1/0x1', '-m', 'comment', '--comment', 'nq-repeat']);
    expect((await host.startWorker('repeat', 3, { plan: { default: { verdict: 'REPEAT', mark: 0x1 } } })).ev).toBe('ready');

    expect(await connect(c, s.addr, 7003, 5_000)).toMatchObject({ ok: true, reply: 'pong' });
    expect(host.packets('repeat')).toHaveLength(1);
    expect(await counter(s, 'iptables', 'mangle', 'PREROUTING', 'nq-pass')).toBe(2); // the hook ran twice
    expect(await counter(s, 'iptables', 'filter', 'INPUT', 'nq-repeat')).toBe(1);
    await host.closeWorker('repeat');
  });

  it('DROP makes the client retransmit the same SYN, which the next verdict accepts', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7004', '-j', 'NFQUEUE', '--queue-num', '4']);
    expect((await host.startWorker('drop', 4, { plan: { actions: [{ verdict: 'DROP' }], default: { verdict: 'ACCEPT' } } })).ev).toBe('ready');
    const r = await connect(c, s.addr, 7004, 6_000);
    expect(r).toMatchObject({ ok: true, reply: 'pong' });
    // The dropped SYN was retransmitted (the queue saw it twice) and the second one got through.
    expect(host.packets('drop')).toHaveLength(2);
    const [first, second] = host.packets('drop');
    expect(second).toBeDefined();
    const a = ipv4Tcp(first!.head);
    const b = ipv4Tcp(second!.head);
    expect(b.sport).toBe(a.sport);
    expect(b.seq).toBe(a.seq);
    expect(second!.id).toBeGreaterThan(first!.id);
    await host.closeWorker('drop');
  });

  it('with no consumer a queue drops (fail-closed) unless the rule has --queue-bypass', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7005', '-j', 'NFQUEUE', '--queue-num', '5']);
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7006', '-j', 'NFQUEUE', '--queue-num', '6', '--queue-bypass']);
    const [closed, bypass] = await Promise.all([connect(c, s.addr, 7005, 1_500), connect(c, s.addr, 7006, 5_000)]);
    expect(closed).toMatchObject({ ok: false, error: 'timeout' });
    expect(bypass).toMatchObject({ ok: true, reply: 'pong' });
  });

  it('a full queue drops what does not fit, failOpen or not: fail-open means only "no reader" (--queue-bypass)', async () => {
    // Attack first (issue #10, case 11): with NFQA_CFG_F_FAIL_OPEN a flood that fills the
    // queue let unjudged SYNs through. The addon never sets it now; failOpen is accepted for
    // old callers and means nothing to the kernel.
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7007', '-j', 'NFQUEUE', '--queue-num', '7']);
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7008', '-j', 'NFQUEUE', '--queue-num', '8']);
    // maxLen 1 and the first packet held without a verdict: the queue is full from then on.
    const hold = { plan: { actions: [{ verdict: 'NONE' as const }], default: { verdict: 'ACCEPT' as const } } };
    expect((await host.startWorker('open', 7, { options: { maxLen: 1, failOpen: true }, ...hold })).ev).toBe('ready');
    expect((await host.startWorker('shut', 8, { options: { maxLen: 1, failOpen: false }, ...hold })).ev).toBe('ready');

    const heldOpen = connect(c, s.addr, 7007, 2_500);
    const heldShut = connect(c, s.addr, 7008, 2_500);
    await host.waitFor((e) => e.wid === 'open' && e.ev === 'packet', 5_000, 'held packet (open)');
    await host.waitFor((e) => e.wid === 'shut' && e.ev === 'packet', 5_000, 'held packet (shut)');

    const attempts = 3;
    const tries = await Promise.all(
      Array.from({ length: attempts }, () => Promise.all([connect(c, s.addr, 7007, 800), connect(c, s.addr, 7008, 800)])),
    );
    const through = { open: tries.filter(([o]) => o.ok).length, shut: tries.filter(([, x]) => x.ok).length };
    expect(through).toEqual({ open: 0, shut: 0 });
    expect(host.packets('open')).toHaveLength(1); // the overflow never reached the reader either
    // The kernel counted each refused SYN (and its retransmissions) as a queue drop.
    const dropped = await queueDropped(s, [7, 8]);
    expect(dropped[7]).toBeGreaterThanOrEqual(attempts);
    expect(dropped[8]).toBeGreaterThanOrEqual(attempts);
    await Promise.all([host.closeWorker('open'), host.closeWorker('shut')]);
    await Promise.all([heldOpen, heldShut]);
  });

  it('four workers each own a queue and all receive packets', async () => {
    const queues = [10, 11, 12, 13];
    for (const [i, q] of queues.entries()) {
      await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', String(7010 + i), '-j', 'NFQUEUE', '--queue-num', String(q)]);
    }
    const ready = await Promise.all(queues.map((q) => host.startWorker(`multi${q}`, q)));
    expect(ready.map((e) => e.ev)).toEqual(['ready', 'ready', 'ready', 'ready']);
    const results = await Promise.all(queues.map((_, i) => connect(c, s.addr, 7010 + i, 5_000)));
    for (const r of results) expect(r).toMatchObject({ ok: true, reply: 'pong' });
    for (const [i, q] of queues.entries()) {
      const pk = host.packets(`multi${q}`);
      expect(pk.length).toBeGreaterThanOrEqual(1);
      expect(ipv4Tcp(pk[0]!.head).dport).toBe(7010 + i);
    }
    await Promise.all(queues.map((q) => host.closeWorker(`multi${q}`)));
  });

  it('a bound queue number is refused to a second consumer, and free again after close or worker exit', async () => {
    expect((await host.startWorker('first', 14)).ev).toBe('ready');
    const second = await host.startWorker('second', 14);
    expect(second).toMatchObject({ ev: 'error', code: 'TESSERA_ERR_QUEUE', name: 'Error' });
    expect(String(second.message)).toMatch(/NFQUEUE 14 is already bound/);

    await host.closeWorker('first'); // closes twice
    host.send({ cmd: 'send', wid: 'first', msg: { cmd: 'rebind' } });
    expect(await host.waitFor((e) => e.wid === 'first' && e.ev === 'rebound', 5_000, 'rebound')).toMatchObject({ ok: true });

    // A worker that exits without close(): the env cleanup hook must unbind its queue.
    expect((await host.startWorker('doomed', 15)).ev).toBe('ready');
    host.send({ cmd: 'terminate', wid: 'doomed' });
    await host.waitFor((e) => e.wid === 'doomed' && e.ev === 'exit', 5_000, 'doomed exit');
    expect((await host.startWorker('heir', 15)).ev).toBe('ready');
    await host.closeWorker('heir');
  });

  it('verdicts given before onBatch throws are still sent; the error reaches uncaughtException', async () => {
    await must(s, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--syn', '--dport', '7009', '-j', 'NFQUEUE', '--queue-num', '9']);
    expect((await host.startWorker('thrower', 9, { throwOnBatch: true })).ev).toBe('ready');
    const r = await connect(c, s.addr, 7009, 5_000);
    expect(r).toMatchObject({ ok: true, reply: 'pong' });
    expect(host.packets('thrower')).toHaveLength(1); // no retransmission: the first SYN was accepted
    expect(await host.waitFor((e) => e.wid === 'thrower' && e.ev === 'uncaught', 2_000, 'uncaught')).toMatchObject({
      message: 'onBatch failure on purpose',
    });
    await host.closeWorker('thrower');
  });
});
