// A stand-in for the daemon's local API on a unix socket, for CLI tests: it answers status,
// recent flows and followed flows with what the test gives it.

import { createServer, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlowEntry } from '../../../src/api/index.js';

export interface FakeDaemon {
  socket: string;
  /** Queries the CLI sent to /v1/flows. */
  flowQueries: URLSearchParams[];
  /** Send a flow to followers. */
  push(f: FlowEntry): void;
  close(): Promise<void>;
}

export async function startFakeDaemon(o: { status?: unknown; flows?: FlowEntry[] }): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  const socket = join(dir, 'api.sock');
  const followers = new Set<ServerResponse>();
  const flowQueries: URLSearchParams[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/v1/status') return json(200, o.status);
    if (url.pathname === '/v1/flows') {
      flowQueries.push(url.searchParams);
      const limit = Number(url.searchParams.get('limit') ?? 100);
      const all = (o.flows ?? []).filter((f) => url.searchParams.get('denied') !== '1' || f.verdict !== 'accept').slice(-limit);
      if (url.searchParams.get('follow') !== '1') return json(200, all);
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (const f of all) res.write(JSON.stringify(f) + '\n');
      followers.add(res);
      res.on('close', () => followers.delete(res));
      return;
    }
    json(404, { error: { code: 'TESSERA_ERR_API', message: `no route ${url.pathname}` } });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    flowQueries,
    push: (f) => {
      for (const r of followers) r.write(JSON.stringify(f) + '\n');
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of followers) r.end();
        server.closeAllConnections();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

export function flow(over: Partial<FlowEntry> = {}): FlowEntry {
  return {
    time: '2026-12-06T02:00:00.000Z',
    direction: 'ingress',
    stage: 'syn',
    verdict: 'accept',
    reason: 'ok',
    ruleId: 'default',
    localPu: 'pu-1',
    localLabels: ['app=web'],
    localPort: 80,
    remoteAddr: '10.213.0.2',
    remotePort: 40000,
    remoteHost: 'b',
    remotePu: 'pu-9',
    remoteLabels: ['app=client'],
    ...over,
  };
}

export function capture(o: { tty?: boolean; color?: boolean } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), ...o }, out, err };
}

export const STATUS = {
  host: 'a',
  trust: 'psk',
  policy: 'default (same labels)',
  queues: [0, 1],
  failOpen: false,
  rules: { ok: true, since: '2026-12-06T01:00:00.000Z' },
  pus: [
    {
      id: 'pu-1',
      name: 'nginx',
      kind: 'container',
      index: 1,
      classid: '0x00100001',
      labels: ['app=web'],
      pids: [42],
      ports: [80],
      createdAt: '2026-12-06T01:00:00.000Z',
      posture: [{ flag: 'host-network', fix: 'drop --network host' }],
    },
  ],
  counters: { flows_accepted: 10, flows_rejected: 2, pus_created: 1, pus_removed: 0, policy_reloads: 0, policy_reload_errors: 0, uptime_seconds: 3725, packets: 100 },
};
