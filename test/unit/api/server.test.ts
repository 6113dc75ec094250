// The local API server on a real unix socket with fake handlers: the socket and its directory
// are root-only, bodies are bounded and validated before a handler sees them, a refused
// request is a 4xx with a code and one message, the daemon's own failures are 500.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer, type ApiHandlers, type ApiServer } from '../../../src/api/index.js';
import { MAX_BODY } from '../../../src/api/server.js';
import { TesseraError } from '../../../src/errors.js';
import type { PuInfo } from '../../../src/api/index.js';

const pu: PuInfo = { id: 'proc-1', name: 'web', kind: 'process', index: 1, classid: '0x1', labels: ['app=web'], pids: [42], ports: [], createdAt: '2026-01-01T00:00:00.000Z', posture: [] };

function handlers(over: Partial<ApiHandlers> = {}): ApiHandlers & { created: unknown[] } {
  const created: unknown[] = [];
  return {
    created,
    async createPu(req) {
      created.push(req);
      return pu;
    },
    deletePu: async (id) => id === 'proc-1',
    listPus: () => [pu],
    status: () => ({ host: 'h' }) as never,
    recentFlows: () => [],
    subscribeFlows: () => () => {},
    metrics: async () => '# HELP x y\n',
    policy: () => ({ name: 'p', text: 't' }),
    revoke: async () => [],
    ...over,
  };
}

function call(socketPath: string, method: string, path: string, body?: string | Buffer): Promise<{ status: number; json: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try {
          json = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    // A server that answers before reading all of a large body may close while we write.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    req.end(body);
  });
}

describe('local API server', () => {
  let dir: string;
  let socket: string;
  let server: ApiServer | null = null;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-api-'));
    socket = join(dir, 'run', 'tessera.sock');
  });
  afterEach(async () => {
    await server?.close();
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the socket 0600 in a new 0700 directory, and removes it on close', async () => {
    server = await startApiServer(socket, handlers());
    expect(statSync(join(dir, 'run')).mode & 0o777).toBe(0o700);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    await server.close();
    server = null;
    expect(existsSync(socket)).toBe(false);
  });

  it('replaces a stale socket file, and refuses a path that is not a socket', async () => {
    // A socket file nobody listens on (a daemon that died): a hard link outlives the close.
    const live = join(dir, 'live.sock');
    const s = createServer();
    await new Promise<void>((r) => s.listen(live, r));
    mkdirSync(join(dir, 'run'), { mode: 0o700 });
    linkSync(live, socket);
    await new Promise<void>((r) => s.close(() => r()));
    expect(statSync(socket).isSocket()).toBe(true);
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(startApiServer(join(dir, 'plain'), handlers())).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_CONFIG', message: expect.stringMatching(/is not a socket/) });
    server = await startApiServer(socket, handlers());
    expect((await call(socket, 'GET', '/v1/pus')).json).toEqual([pu]);
  });

  it('validates a PU request before the handler: invalid JSON, unknown field, bad pid', async () => {
    const h = handlers();
    server = await startApiServer(socket, h);
    const bad = await call(socket, 'POST', '/v1/pus', '{"labels": [');
    expect(bad).toMatchObject({ status: 400, json: { error: { code: 'TESSERA_ERR_API', message: 'request body is not valid JSON' } } });
    const unknown = await call(socket, 'POST', '/v1/pus', JSON.stringify({ labels: ['a=b'], pid: 42, color: 'red' }));
    expect(unknown).toMatchObject({ status: 400, json: { error: { message: 'unknown field "color"' } } });
    const pid = await call(socket, 'POST', '/v1/pus', JSON.stringify({ labels: ['a=b'], pid: 1 }));
    expect(pid).toMatchObject({ status: 400, json: { error: { message: expect.stringMatching(/"pid" must be/) } } });
    expect(h.created).toEqual([]);
    const ok = await call(socket, 'POST', '/v1/pus', JSON.stringify({ labels: ['a=b'], pid: 42 }));
    expect(ok).toMatchObject({ status: 201, json: pu });
    expect(h.created).toEqual([{ labels: ['a=b'], pid: 42 }]);
  });

  it('answers 413 to a body over the limit and never calls the handler', async () => {
    const h = handlers();
    server = await startApiServer(socket, h);
    const big = JSON.stringify({ labels: ['a=' + 'x'.repeat(MAX_BODY)], pid: 42 });
    const r = await call(socket, 'POST', '/v1/pus', big);
    expect(r).toMatchObject({ status: 413, json: { error: { code: 'TESSERA_ERR_API', message: expect.stringMatching(/too large/) } } });
    expect(h.created).toEqual([]);
    // The server still serves.
    expect((await call(socket, 'GET', '/v1/pus')).status).toBe(200);
  });

  it('maps failures: the daemon\'s own (rules, cgroups, unexpected) are 500, a refused request 400, an unknown PU or route 404', async () => {
    let err: unknown = new TesseraError('TESSERA_ERR_RULES', 'rules could not be installed');
    server = await startApiServer(socket, handlers({ createPu: async () => Promise.reject(err) }));
    const body = JSON.stringify({ labels: ['a=b'], pid: 42 });
    expect(await call(socket, 'POST', '/v1/pus', body)).toMatchObject({ status: 500, json: { error: { code: 'TESSERA_ERR_RULES' } } });
    err = new TesseraError('TESSERA_ERR_INVALID_LABEL', 'bad label');
    expect(await call(socket, 'POST', '/v1/pus', body)).toMatchObject({ status: 400, json: { error: { code: 'TESSERA_ERR_INVALID_LABEL' } } });
    err = new Error('surprise');
    expect(await call(socket, 'POST', '/v1/pus', body)).toMatchObject({ status: 500, json: { error: { code: 'TESSERA_ERR_API', message: 'surprise' } } });
    expect(await call(socket, 'DELETE', '/v1/pus/proc-9')).toMatchObject({ status: 404, json: { error: { code: 'TESSERA_ERR_PU' } } });
    expect(await call(socket, 'DELETE', '/v1/pus/proc-1')).toMatchObject({ status: 200, json: { deleted: 'proc-1' } });
    expect(await call(socket, 'GET', '/v1/nothing')).toMatchObject({ status: 404, json: { error: { message: 'no route GET /v1/nothing' } } });
    expect(await call(socket, 'PUT', '/v1/status')).toMatchObject({ status: 404 });
  });

  it('serves /metrics as Prometheus text, and refuses enrollment when not following Docker (409)', async () => {
    server = await startApiServer(socket, handlers());
    expect(await call(socket, 'GET', '/metrics')).toMatchObject({ status: 200, text: '# HELP x y\n' });
    const r = await call(socket, 'POST', '/v1/containers/enroll', JSON.stringify({ id: 'abc', pid: 42, bundle: '/run/b' }));
    expect(r).toMatchObject({ status: 409, json: { error: { code: 'TESSERA_ERR_ENROLL' } } });
  });
});
