// --metrics-listen ADDR:PORT: Prometheus and health probes over TCP, read-only. /metrics is
// the same text as the unix socket's; /healthz answers 200 while the process serves at all;
// /readyz answers 200 only when the daemon protects PUs (rules applied, workers bound,
// policy loaded), else 503 with the reasons. Nothing else is served here: the control API
// stays on the unix socket, reachable by root only.

import { createServer, type Server } from 'node:http';
import { TesseraError } from '../errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface ProbeHandlers {
  metrics(): Promise<string>;
  readiness(): { ready: boolean; reasons: string[] };
}

export interface MetricsServer {
  /** Where it listens (the port the kernel chose for port 0). */
  readonly address: ListenAddress;
  close(): Promise<void>;
}


export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

export async function startMetricsServer(listen: ListenAddress, h: ProbeHandlers): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'only GET\n');
    const path = new URL(req.url ?? '/', 'http://tessera').pathname;
    if (path === '/healthz') return text(200, 'ok\n');
    if (path === '/readyz') {
      const r = h.readiness();
      return r.ready ? text(200, 'ready\n') : text(503, JSON.stringify({ ready: false, reasons: r.reasons }) + '\n', 'application/json');
    }
    if (path === '/metrics') {
      h.metrics().then(
        (body) => text(200, body, 'text/plain; version=0.0.4; charset=utf-8'),
        (err: unknown) => text(500, `metrics failed: ${err instanceof Error ? err.message : String(err)}\n`),
      );
      return;
    }
    text(404, 'not found: /metrics, /healthz, /readyz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--metrics-listen ${listen.host}:${listen.port}: cannot listen (${err.code ?? err.message})`, { cause: err })),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? { host: listen.host, port: a.port } : listen;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
