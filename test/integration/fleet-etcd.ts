// A real three-member etcd cluster (Debian's etcd-server) on loopback ports the caller picks,
// data in a temp dir. Members are started, killed (SIGKILL by PID), paused (SIGSTOP) and
// restarted by PID only; destroy() stops every member this helper started and removes the dir.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { EtcdClient } from '../../src/fleet/etcd.js';

export const ETCD_BIN = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => existsSync(p)) ?? null;

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc: ChildProcess | null;
  log: string[];
}

export interface EtcdCluster {
  dir: string;
  members: EtcdMember[];
  endpoints: { host: string; port: number }[];
  url: string;
  kill(i: number): Promise<void>;
  restart(i: number): void;
  pause(i: number): void;
  resume(i: number): void;
  /** Index of the member that is the leader now (asks each running member). */
  leaderIndex(): Promise<number>;
  waitHealthy(timeoutMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startEtcdCluster(opts: { basePort: number; size?: number; name: string }): Promise<EtcdCluster> {
  if (!ETCD_BIN) throw new Error('etcd is not installed (apt-get install -y etcd-server; scripts/setup.sh does it)');
  const size = opts.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), `tessera-${opts.name}-`));
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    const clientPort = opts.basePort + i;
    const peerPort = opts.basePort + 10 + i;
    for (const p of [clientPort, peerPort]) if (!(await portFree(p))) throw new Error(`port ${p} is in use (a leftover etcd?)`);
    members.push({ name: `m${i}`, clientPort, peerPort, dataDir: join(dir, `m${i}`), proc: null, log: [] });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const token = `${opts.name}-${process.pid}-${Date.now()}`;
  const launch = (m: EtcdMember, state: 'new' | 'existing'): void => {
    const args = [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${token}`,
      '--heartbeat-interval=100',
      '--election-timeout=1000',
      '--log-level=warn',
      '--logger=zap',
    ];
    const proc = spawn(ETCD_BIN!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer): void => {
      m.log.push(b.toString());
      if (m.log.length > 200) m.log.shift();
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.on('exit', () => {
      if (m.proc === proc) m.proc = null;
    });
    m.proc = proc;
  };
  for (const m of members) launch(m, 'new');

  const endpoints = members.map((m) => ({ host: '127.0.0.1', port: m.clientPort }));
  const statusOf = async (i: number): Promise<{ leader: string; member: string } | null> => {
    const c = new EtcdClient({ endpoints: [endpoints[i]!], requestTimeoutMs: 1000 });
    try {
      const s = await c.status();
      return { leader: s.leader, member: s.header.member_id };
    } catch {
      return null;
    } finally {
      c.close();
    }
  };
  const cluster: EtcdCluster = {
    dir,
    members,
    endpoints,
    url: `etcd://${endpoints.map((e) => `${e.host}:${e.port}`).join(',')}`,
    async kill(i) {
      const p = members[i]!.proc;
      if (!p || p.pid === undefined) return;
      const exited = new Promise((r) => p.once('exit', r));
      process.kill(p.pid, 'SIGKILL');
      await exited;
    },
    restart(i) {
      if (members[i]!.proc) throw new Error(`member ${i} is running`);
      launch(members[i]!, 'existing');
    },
    pause(i) {
      const p = members[i]!.proc;
      if (p?.pid !== undefined) process.kill(p.pid, 'SIGSTOP');
    },
    resume(i) {
      const p = members[i]!.proc;
      if (p?.pid !== undefined) process.kill(p.pid, 'SIGCONT');
    },
    async leaderIndex() {
      for (let i = 0; i < members.length; i++) {
        if (!members[i]!.proc) continue;
        const s = await statusOf(i);
        if (s && s.leader !== '0' && s.leader === s.member) return i;
      }
      return -1;
    },
    async waitHealthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        let ok = 0;
        let running = 0;
        for (let i = 0; i < members.length; i++) {
          if (!members[i]!.proc) continue;
          running++;
          const s = await statusOf(i);
          if (s && s.leader !== '0') ok++;
        }
        if (running > 0 && ok === running) return;
        await sleep(200);
      }
      throw new Error(`etcd cluster not healthy after ${timeoutMs} ms:\n${members.map((m) => `${m.name}: ${m.log.slice(-3).join('')}`).join('\n')}`);
    },
    async destroy() {
      for (const m of members) {
        const p = m.proc;
        if (p?.pid !== undefined) {
          const exited = new Promise((r) => p.once('exit', r));
          try {
            process.kill(p.pid, 'SIGCONT');
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
          await Promise.race([exited, sleep(5000)]);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.waitHealthy();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
