// The local control API: HTTP over a unix socket. The socket file is created 0600 in a 0700
// directory, so only root (the daemon's user) can connect.

import type { EdgeTableJson } from '../learn/edges.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, chmodSync, rmSync, existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { TesseraError, httpStatusOf } from '../errors.js';
import { parseCreatePuRequest, parseEnrollContainerRequest, type CreatePuRequest, type EnrollContainerRequest, type EnrollContainerResponse, type FlowEntry, type PuInfo, type RevokedFlowInfo, type StatusResponse } from './schemas.js';

export interface ApiHandlers {
  createPu(req: CreatePuRequest): Promise<PuInfo>;
  deletePu(id: string): Promise<boolean>;
  listPus(): PuInfo[];
  status(): StatusResponse;
  recentFlows(opts: { deniedOnly: boolean; limit: number }): FlowEntry[];
  /** Calls `fn` for every new flow until the returned function is called. */
  subscribeFlows(fn: (f: FlowEntry) => void): () => void;
  /** Prometheus text (also served over TCP by --metrics-listen). */
  metrics(): Promise<string>;
  policy(): { name: string; text: string };
  revoke(dryRun: boolean): Promise<RevokedFlowInfo[]>;
  /** Learn mode: the observed edges (this host's, merged with the cluster's when there is a store). */
  learnEdges?(): Promise<EdgeTableJson>;
  /** Runtime shim: make a created container a PU before it starts (absent: the daemon does not follow Docker). */
  enrollContainer?(req: EnrollContainerRequest): Promise<EnrollContainerResponse>;
}

export interface ApiServer {
  close(): Promise<void>;
}

export const MAX_BODY = 64 * 1024;

/** A request the client got wrong: answered 400 (413 for a body over MAX_BODY). */
class BadRequest extends TesseraError {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super('TESSERA_ERR_API', message);
  }
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BadRequest(`request body too large (at most ${MAX_BODY} bytes)`, 413));
        // Stop reading; the answer is sent, then the connection closed.
        req.removeAllListeners('data');
        req.pause();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new BadRequest('request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, err: unknown): void {
  if (err instanceof BadRequest) status = err.status;
  if (status === 413) res.setHeader('connection', 'close');
  const code = err instanceof TesseraError ? err.code : 'TESSERA_ERR_API';
  const message = err instanceof Error ? err.message : String(err);
  send(res, status, { error: { code, message } });
}

export async function startApiServer(socketPath: string, h: ApiHandlers): Promise<ApiServer> {
  const dir = dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(socketPath)) {
    if (!statSync(socketPath).isSocket()) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `${socketPath} exists and is not a socket`);
    rmSync(socketPath); // stale socket of a daemon that died; a live one was checked by the caller
  }
  const followers = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    void route(req, res).catch((err) => sendError(res, 500, err));
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://tessera');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/v1/status') return send(res, 200, h.status());
    if (req.method === 'GET' && path === '/v1/pus') return send(res, 200, h.listPus());
    if (req.method === 'POST' && path === '/v1/pus') {
      let body: CreatePuRequest;
      try {
        body = parseCreatePuRequest(await readBody(req));
      } catch (err) {
        return sendError(res, 400, err);
      }
      try {
        return send(res, 201, await h.createPu(body));
      } catch (err) {
        // The daemon's own failures (cgroups, rules) are 500; a request it refuses is 400 (src/errors.ts).
        return sendError(res, err instanceof TesseraError ? httpStatusOf(err.code) : 500, err);
      }
    }
    if (req.method === 'POST' && path === '/v1/containers/enroll') return enrollRoute(req, res);
    const del = /^\/v1\/pus\/([A-Za-z0-9._-]+)$/.exec(path);
    if (req.method === 'DELETE' && del) {
      const ok = await h.deletePu(del[1]!);
      return ok ? send(res, 200, { deleted: del[1] }) : sendError(res, 404, new TesseraError('TESSERA_ERR_PU', `no PU ${del[1]}`));
    }
    if (req.method === 'GET' && path === '/v1/flows') {
      const deniedOnly = url.searchParams.get('denied') === '1';
      const limit = Math.min(Math.max(Number(url.searchParams.get('limit') ?? 100) || 100, 1), 10_000);
      if (url.searchParams.get('follow') !== '1') return send(res, 200, h.recentFlows({ deniedOnly, limit }));
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (const f of h.recentFlows({ deniedOnly, limit })) res.write(JSON.stringify(f) + '\n');
      followers.add(res);
      const unsubscribe = h.subscribeFlows((f) => {
        if (!deniedOnly || f.verdict !== 'accept') res.write(JSON.stringify(f) + '\n');
      });
      res.on('close', () => {
        unsubscribe();
        followers.delete(res);
      });
      return;
    }
    if (req.method === 'GET' && path === '/v1/policy') return send(res, 200, h.policy());
    if (req.method === 'GET' && path === '/v1/learn/edges' && h.learnEdges) return send(res, 200, await h.learnEdges());
    if (req.method === 'POST' && path === '/v1/flows/revoke') return send(res, 200, await h.revoke(url.searchParams.get('dry') === '1'));
    if (req.method === 'GET' && path === '/metrics') {
      const text = await h.metrics();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(text);
      return;
    }
    sendError(res, 404, new TesseraError('TESSERA_ERR_API', `no route ${req.method} ${path}`));
  }

  async function enrollRoute(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: EnrollContainerRequest;
    try {
      body = parseEnrollContainerRequest(await readBody(req));
    } catch (err) {
      return sendError(res, 400, err);
    }
    if (!h.enrollContainer) return sendError(res, 409, new TesseraError('TESSERA_ERR_ENROLL', 'this daemon does not follow a Docker engine (start it with --docker)'));
    try {
      return send(res, 200, await h.enrollContainer(body));
    } catch (err) {
      return sendError(res, err instanceof TesseraError && err.code === 'TESSERA_ERR_API' ? 400 : 500, err);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const f of followers) f.end();
        server.close(() => resolve());
        server.closeAllConnections();
        rmSync(socketPath, { force: true });
      }),
  };
}
