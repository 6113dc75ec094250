// The flow map's HTTP side: a request handler made from injected sources (recent flow
// records, a live subscription, the policy's explain, the local host's PUs), so that the
// daemon feeds it from its flow log and unit tests feed it fakes. Read-only: GET and HEAD.
//
//   /                       the page            /assets/NAME   its scripts and style
//   /vendor/cytoscape.mjs   cytoscape, served from the installed npm package (no CDN)
//   /api/graph?FILTER       the map (graph.ts)  /api/flows?FILTER&edge=ID  one edge's flows
//   /api/events?FILTER      server-sent events: one `flow` event per new matching record
//
// With a token configured, /api/* needs `Authorization: Bearer TOKEN` or `?token=TOKEN`
// (EventSource cannot send headers). The page and its assets hold no data and need none.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FlowEntry } from '../api/schemas.js';
import { buildGraph, classOf, edgeIdOf, matches, parseQuery, type LocalView } from './graph.js';

export interface ExplainRequest {
  from: readonly string[] | null;
  to: readonly string[] | null;
  port: number;
  direction: 'ingress' | 'egress';
  peerAddr?: string;
}

export interface UiDeps {
  /** Recent flow records, oldest first, within the range (ms since the epoch) when given. */
  recentFlows(range: { since?: number; until?: number }): FlowEntry[];
  /** Calls `fn` for every new record until the returned function is called. */
  subscribeFlows(fn: (f: FlowEntry) => void): () => void;
  /** The current policy's `explain` for one connection (absent: no explanation shown). */
  explain?(q: ExplainRequest): unknown;
  /** This host and its PUs (shown even before they have flows). */
  local(): LocalView;
  /** When set, /api/* requires it. */
  token?: string;
  now?: () => number;
  /** Most concurrent event streams (default 32); more are answered 503. */
  maxFollowers?: number;
}

export interface UiHandler {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Ends every event stream. */
  close(): void;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

const HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
};

/** The page's files: beside this module in src/, or in src/ when running from dist/. */
export function assetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [join(here, 'assets'), resolve(here, '../../../src/ui/assets')]) if (existsSync(join(c, 'index.html'))) return c;
  throw new Error(`the flow map's page is missing (looked in ${join(here, 'assets')})`);
}

/** cytoscape's ES module build, from the installed package. */
export function cytoscapePath(): string {
  const main = createRequire(import.meta.url).resolve('cytoscape');
  return join(dirname(main), 'cytoscape.esm.min.mjs');
}

function loadStatic(): Map<string, { type: string; body: Buffer }> {
  const dir = assetsDir();
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) files.set(`/assets/${name}`, { type, body: readFileSync(join(dir, name)) });
  }
  const index = files.get('/assets/index.html');
  if (index) files.set('/', index);
  files.set('/vendor/cytoscape.mjs', { type: TYPES['.mjs']!, body: readFileSync(cytoscapePath()) });
  return files;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...HEADERS, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: { code: 'TESSERA_ERR_API', message } });
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

const MAX_FLOWS = 500;

export function createUiHandler(deps: UiDeps): UiHandler {
  const files = loadStatic();
  const now = deps.now ?? Date.now;
  const followers = new Set<ServerResponse>();
  const maxFollowers = deps.maxFollowers ?? 32;

  function authorized(req: IncomingMessage, url: URL): boolean {
    if (!deps.token) return true;
    const auth = req.headers.authorization;
    const given = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : url.searchParams.get('token');
    return given !== null && given !== undefined && sameSecret(given, deps.token);
  }

  function flowsRoute(url: URL, res: ServerResponse): void {
    const q = parseQuery(url.searchParams, now());
    if (q instanceof Error) return sendError(res, 400, q.message);
    const key = q.opts.groupBy || 'app';
    const edge = url.searchParams.get('edge');
    const limit = Math.min(Math.max(Number(url.searchParams.get('limit')) || 100, 1), MAX_FLOWS);
    const out: Array<FlowEntry & { class: string; edge: string }> = [];
    let total = 0;
    const all = deps.recentFlows(rangeOf(q.filter));
    for (let i = all.length - 1; i >= 0; i--) {
      const f = all[i]!;
      if (!matches(f, q.filter)) continue;
      const id = edgeIdOf(f, key, q.opts.addrBits);
      if (edge && id !== edge) continue;
      total++;
      if (out.length < limit) out.push({ ...f, class: classOf(f), edge: id });
    }
    let explanation: unknown;
    const latest = out[0];
    if (edge && latest && deps.explain) {
      // The latest decision, explained with today's policy, from the host's side that made it.
      const local = latest.localLabels;
      const remote = latest.remoteLabels;
      const ingress = latest.direction === 'ingress';
      try {
        explanation = deps.explain({
          from: ingress ? remote : local,
          to: ingress ? local : remote,
          port: ingress ? latest.localPort : latest.remotePort,
          direction: latest.direction,
          ...(remote === null ? { peerAddr: latest.remoteAddr } : {}),
        });
      } catch (err) {
        explanation = { error: err instanceof Error ? err.message : String(err) };
      }
    }
    sendJson(res, 200, { total, flows: out, ...(explanation !== undefined ? { explanation } : {}) });
  }

  function eventsRoute(req: IncomingMessage, url: URL, res: ServerResponse): void {
    const q = parseQuery(url.searchParams, now());
    if (q instanceof Error) return sendError(res, 400, q.message);
    if (followers.size >= maxFollowers) return sendError(res, 503, `too many event streams open (${maxFollowers})`);
    // The time range applies to history; live records are always "now".
    const { since: _s, until, ...filter } = q.filter;
    if (until !== undefined) return sendError(res, 400, 'until: a live stream has no end; leave until out');
    res.writeHead(200, { ...HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    followers.add(res);
    const key = q.opts.groupBy || 'app';
    const unsubscribe = deps.subscribeFlows((f) => {
      if (matches(f, filter)) res.write(`event: flow\ndata: ${JSON.stringify({ ...f, class: classOf(f), edge: edgeIdOf(f, key, q.opts.addrBits) })}\n\n`);
    });
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    ping.unref();
    const end = (): void => {
      clearInterval(ping);
      unsubscribe();
      followers.delete(res);
    };
    req.on('close', end);
    res.on('close', end);
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://tessera-ui');
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendError(res, 405, 'the flow map is read-only');
    }
    const file = files.get(path);
    if (file) {
      res.writeHead(200, { ...HEADERS, 'content-type': file.type, 'content-length': file.body.length });
      res.end(req.method === 'HEAD' ? undefined : file.body);
      return;
    }
    if (!path.startsWith('/api/')) return sendError(res, 404, `no page ${path}`);
    if (!authorized(req, url)) {
      res.setHeader('www-authenticate', 'Bearer realm="tessera-ui"');
      return sendError(res, 401, 'this flow map needs its token: open it with ?token=TOKEN or send Authorization: Bearer TOKEN');
    }
    try {
      if (path === '/api/graph') {
        const q = parseQuery(url.searchParams, now());
        if (q instanceof Error) return sendError(res, 400, q.message);
        return sendJson(res, 200, buildGraph(deps.recentFlows(rangeOf(q.filter)), q.filter, q.opts, deps.local()));
      }
      if (path === '/api/flows') return flowsRoute(url, res);
      if (path === '/api/events') return eventsRoute(req, url, res);
    } catch (err) {
      return sendError(res, 500, err instanceof Error ? err.message : String(err));
    }
    sendError(res, 404, `no route ${path}`);
  }

  return {
    handle,
    close() {
      for (const f of followers) f.end();
      followers.clear();
    },
  };
}

function rangeOf(f: { since?: number; until?: number }): { since?: number; until?: number } {
  return { ...(f.since !== undefined ? { since: f.since } : {}), ...(f.until !== undefined ? { until: f.until } : {}) };
}
