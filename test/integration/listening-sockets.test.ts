// The addon's listeningSockets() (NETLINK_SOCK_DIAG, LISTEN only) against the real kernel:
// it reports this process's listeners on 127.0.0.1 and ::1 under their socket inodes, never a
// connected socket, agrees with the /proc/net/tcp{,6} reader, and answers for the network
// namespace of the calling thread (a helper in a fresh namespace with enough listeners that
// the dump comes back in several parts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { createTopology, isRoot, killAndWait, uniquePrefix, type Topology } from '../../scripts/lib/netns.js';
import { listeningSockets } from '../../src/monitors/process/listeners.js';
import type * as Native from '../../native/index.js';
import { skipBecause } from '../helpers/skip.js';

const NATIVE = fileURLToPath(new URL('../../native/index.cjs', import.meta.url));

/** The socket inode behind a net.Server or net.Socket of this process, from /proc/self/fd. */
function inodeOf(s: Server | Socket): string {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no fd on this handle');
  const link = readlinkSync(`/proc/self/fd/${fd}`);
  const m = /^socket:\[(\d+)\]$/.exec(link);
  if (!m) throw new Error(`fd ${fd} is not a socket: ${link}`);
  return m[1]!;
}

function listen(host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => c.on('error', () => {}));
    s.once('error', reject);
    s.listen(0, host, () => resolve(s));
  });
}

const portOf = (s: Server): number => (s.address() as AddressInfo).port;

// Runs in the namespace: LISTENERS sockets on 127.0.0.1 and one on ::1, then prints its pid,
// their ports and its own listeningSockets() answer, and stays until stdin closes.
const LISTENERS = 300;
const HELPER = `
const net = require('node:net');
const { listeningSockets } = require(${JSON.stringify(NATIVE)});
const hosts = [...Array(${LISTENERS}).fill('127.0.0.1'), '::1'];
Promise.all(hosts.map((h) => new Promise((res, rej) => { const s = net.createServer(); s.once('error', rej); s.listen(0, h, () => res(s.address().port)); })))
  .then((ports) => {
    process.stdout.write(JSON.stringify({ pid: process.pid, ports, dump: Array.from(listeningSockets()) }) + '\\n');
    process.stdin.on('end', () => process.exit(0)).resume();
  })
  .catch((e) => { process.stdout.write(JSON.stringify({ error: String(e) }) + '\\n'); process.exit(1); });
`;

skipBecause(!isRoot, 'listening sockets integration (needs root)', 'integration tests need root: run as root');

describe.runIf(isRoot)('listeningSockets() through sock_diag', () => {
  const native = createRequire(import.meta.url)(NATIVE) as typeof Native;
  const dumpMap = (): Map<string, number> => listeningSockets(native.listeningSockets);
  let v4: Server | undefined;
  let v6: Server | undefined;
  let client: Socket | undefined;
  let accepted: Socket | undefined;
  let topo: Topology | undefined;
  let helper: ChildProcess | undefined;

  beforeAll(async () => {
    v4 = await listen('127.0.0.1');
    v6 = await listen('::1');
    const acceptedP = new Promise<Socket>((resolve) => v4!.once('connection', resolve));
    client = connect(portOf(v4), '127.0.0.1');
    client.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      client!.once('connect', resolve);
      client!.once('error', reject);
    });
    accepted = await acceptedP;
  });

  afterAll(async () => {
    try {
      client?.destroy();
      accepted?.destroy();
      for (const s of [v4, v6]) if (s?.listening) await new Promise((resolve) => s.close(resolve));
    } finally {
      if (helper) await killAndWait(helper);
      await topo?.destroy();
    }
  });

  it('reports the listeners on 127.0.0.1 and ::1 under their socket inodes', () => {
    const m = dumpMap();
    expect(m.get(inodeOf(v4!))).toBe(portOf(v4!));
    expect(m.get(inodeOf(v6!))).toBe(portOf(v6!));
  });

  it('does not report connected sockets', () => {
    const m = dumpMap();
    expect(m.has(inodeOf(client!))).toBe(false);
    expect(m.has(inodeOf(accepted!))).toBe(false);
    expect(native.listeningSockets().length % 2).toBe(0);
  });

  it('agrees with the /proc/net/tcp{,6} reader on these listeners', () => {
    const fromDump = dumpMap();
    const fromProc = listeningSockets(null);
    for (const s of [v4!, v6!]) {
      const inode = inodeOf(s);
      expect(fromDump.get(inode)).toBe(portOf(s));
      expect(fromProc.get(inode)).toBe(fromDump.get(inode));
    }
  });

  it("answers for the calling thread's namespace, across a multi-part dump, as /proc does", async () => {
    topo = await createTopology({ prefix: uniquePrefix('ls'), hosts: ['a'], subnet: 61 });
    helper = topo.host('a').spawn(['node', '-e', HELPER]);
    let stderr = '';
    helper.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`helper did not answer in 20 s; stderr: ${stderr}`)), 20_000);
      createInterface({ input: helper!.stdout! }).once('line', (l) => {
        clearTimeout(t);
        resolve(l);
      });
      helper!.once('exit', (code) => reject(new Error(`helper exited (${code}); stderr: ${stderr}`)));
    });
    const report = JSON.parse(line) as { pid: number; ports: number[]; dump: number[]; error?: string };
    expect(report.error).toBeUndefined();
    // ~124 bytes per socket: 301 do not fit one part of the dump (the kernel sends 3.7 KiB,
    // then up to 32 KiB per part; strace shows 3 parts and NLMSG_DONE here).
    expect(report.dump.length).toBe(2 * (LISTENERS + 1));
    const inNs = listeningSockets(() => Uint32Array.from(report.dump));
    expect([...inNs.values()].sort((a, b) => a - b)).toEqual([...report.ports].sort((a, b) => a - b));
    // /proc/PID/net is the helper's namespace: the same inodes and ports, nothing else.
    expect(new Map([...listeningSockets(null, `/proc/${report.pid}/net`)].sort())).toEqual(new Map([...inNs].sort()));
    // This process's listeners are not in there.
    expect(inNs.has(inodeOf(v4!))).toBe(false);
    expect(inNs.has(inodeOf(v6!))).toBe(false);
  });
});
