// The UI's HTTP side on a real loopback socket with injected flows: routes, the token, the
// Host check, bad input, the event stream, and the listener's settings.

import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import type { FlowEntry } from '../../../src/api/schemas.js';
import { createUiHandler } from '../../../src/ui/server.js';
import { checkUiListen, readUiToken, startUiServer, type UiServer } from '../../../src/ui/listen.js';
import { flow } from '../../../bench/lib/ui-fixture.js';

let server: UiServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const subs = new Set<(f: FlowEntry) => void>();
const flows = [flow({ client: 'web', server: 'api', port: 8080 }), flow({ client: 'web', server: 'db', port: 5432, verdict: 'reject' })];

async function start(opts: { token?: string; explain?: boolean } = {}): Promise<number> {
  const handler = createUiHandler({
    recentFlows: () => flows,
    subscribeFlows(fn) {
      subs.add(fn);
      return () => void subs.delete(fn);
    },
    ...(opts.explain ? { explain: () => { throw new Error('no policy'); } } : {}),
    local: () => ({ host: 'h', pus: [] }),
    ...(opts.token ? { token: opts.token } : {}),
  });
  server = await startUiServer({ host: '127.0.0.1', port: 0, loopback: true }, handler, opts.token ? { token: opts.token } : {});
  return server.port;
}

function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('UI handler', () => {
  it('serves the page, its assets and cytoscape from the installed package', async () => {
    const port = await start();
    const page = await get(port, '/');
    expect(page.status).toBe(200);
    expect(page.type).toContain('text/html');
    expect(page.body).toContain('/assets/app.js');
    expect((await get(port, '/assets/app.js')).type).toContain('javascript');
    expect((await get(port, '/assets/layout-worker.js')).status).toBe(200);
    const cy = await get(port, '/vendor/cytoscape.mjs');
    expect(cy.status).toBe(200);
    expect(cy.body).toMatch(/export\s*\{/);
    expect((await get(port, '/assets/../server.ts')).status).toBe(404);
  });

  it('answers the graph and one edge\'s flows; the explain failure is shown, not thrown', async () => {
    const port = await start({ explain: true });
    const g = JSON.parse((await get(port, '/api/graph?verdict=refused')).body);
    expect(g.edges.map((e: { id: string }) => e.id)).toEqual(['pu:app=web->pu:app=db']);
    const f = JSON.parse((await get(port, `/api/flows?edge=${encodeURIComponent('pu:app=web->pu:app=db')}`)).body);
    expect(f.total).toBe(1);
    expect(f.flows[0]).toMatchObject({ class: 'refused', reason: 'policy', edge: 'pu:app=web->pu:app=db' });
    expect(f.explanation).toEqual({ error: 'no policy' });
  });

  it('refuses bad filters with a reason, writes with 405, unknown paths with 404', async () => {
    const port = await start();
    const bad = await get(port, '/api/graph?port=http');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toEqual({ code: 'TESSERA_ERR_API', message: 'port: "http" is not a port number' });
    expect((await get(port, '/api/graph', {}, 'POST')).status).toBe(405);
    expect((await get(port, '/api/nothing')).status).toBe(404);
    expect((await get(port, '/api/events?until=1h')).status).toBe(400);
  });

  it('with a token: /api needs it (header or query), the page does not', async () => {
    const port = await start({ token: 'sixteen-chars-or-more' });
    expect((await get(port, '/')).status).toBe(200);
    expect((await get(port, '/api/graph')).status).toBe(401);
    expect((await get(port, '/api/graph?token=wrong')).status).toBe(401);
    expect((await get(port, '/api/graph?token=sixteen-chars-or-more')).status).toBe(200);
    expect((await get(port, '/api/graph', { authorization: 'Bearer sixteen-chars-or-more' })).status).toBe(200);
  });

  it('on loopback without a token, answers only to a loopback Host (no DNS rebinding)', async () => {
    const port = await start();
    expect((await get(port, '/api/graph', { host: 'evil.example:80' })).status).toBe(421);
    expect((await get(port, '/api/graph', { host: `localhost:${port}` })).status).toBe(200);
  });

  it('streams new matching records as server-sent events', async () => {
    const port = await start();
    const got = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/api/events?verdict=refused' }, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        let text = '';
        res.on('data', (c) => {
          text += c;
          if (text.includes('event: flow')) {
            req.destroy();
            resolve(text);
          }
        });
        // Subscribed once the headers are out: one allowed record (filtered out), one refused.
        for (const s of subs) s(flows[0]!);
        for (const s of subs) s(flows[1]!);
      });
      req.on('error', reject);
      req.end();
    });
    const data = JSON.parse(got.split('data: ')[1]!.split('\n')[0]!);
    expect(data).toMatchObject({ class: 'refused', edge: 'pu:app=web->pu:app=db', remotePort: 5432 });
    await expect.poll(() => subs.size).toBe(0);
  });
});

describe('UI listener settings', () => {
  it('refuses a non-loopback listener without a token file, with the fix in the message', () => {
    expect(() => checkUiListen({ host: '10.0.0.1', port: 9090 }, undefined)).toThrow(/--ui 10.0.0.1:9090 listens beyond this host and needs --ui-token-file FILE/);
    expect(() => checkUiListen({ host: '::', port: 9090 }, undefined)).toThrow(/--ui \[::\]:9090 listens beyond/);
    expect(checkUiListen({ host: '127.0.0.1', port: 9090 }, undefined).loopback).toBe(true);
    expect(checkUiListen({ host: '::1', port: 9090 }, undefined).loopback).toBe(true);
    expect(checkUiListen({ host: '0.0.0.0', port: 9090 }, '/etc/tessera/ui.token').loopback).toBe(false);
  });

  it('reads a token file only when private and long enough', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-ui-'));
    const file = join(dir, 'token');
    writeFileSync(file, 'a-secret-of-sufficient-length\n', { mode: 0o600 });
    expect(readUiToken(file)).toBe('a-secret-of-sufficient-length');
    chmodSync(file, 0o644);
    expect(() => readUiToken(file)).toThrow(/readable by group or others; chmod 600/);
    writeFileSync(join(dir, 'short'), 'short', { mode: 0o600 });
    expect(() => readUiToken(join(dir, 'short'))).toThrow(/at least 16 characters/);
    expect(() => readUiToken(join(dir, 'missing'))).toThrow(/cannot be read: ENOENT/);
  });
});
