// --metrics-listen: loopback detection and the TCP server's three
// read-only endpoints, /metrics, /healthz (process up) and /readyz (503 with the reasons).
import { afterEach, describe, expect, it } from 'vitest';
import { isLoopback, startMetricsServer, type MetricsServer } from '../../../src/api/index.js';

describe('isLoopback', () => {
  it('tells loopback from other addresses', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '10.213.0.1', '::'].some(isLoopback)).toBe(false);
  });
});

describe('metrics server', () => {
  let server: MetricsServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  async function start(readiness: () => { ready: boolean; reasons: string[] }) {
    server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, { metrics: async () => 'tessera_pus 1\n', readiness });
    const base = `http://127.0.0.1:${server.address.port}`;
    return (path: string, init?: RequestInit) => fetch(base + path, init);
  }

  it('/healthz is 200 while the process serves; /readyz 503 with reasons until ready, then 200', async () => {
    let r = { ready: false, reasons: ['host rules not applied'] };
    const get = await start(() => r);
    expect((await get('/healthz')).status).toBe(200);
    const notReady = await get('/readyz');
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ ready: false, reasons: ['host rules not applied'] });
    r = { ready: true, reasons: [] };
    const ready = await get('/readyz');
    expect([ready.status, await ready.text()]).toEqual([200, 'ready\n']);
  });

  it('serves /metrics; anything else is 404, and nothing but GET/HEAD is accepted', async () => {
    const get = await start(() => ({ ready: true, reasons: [] }));
    const m = await get('/metrics');
    expect([m.status, await m.text()]).toEqual([200, 'tessera_pus 1\n']);
    expect((await get('/v1/status')).status).toBe(404);
    expect((await get('/metrics', { method: 'POST', body: 'x' })).status).toBe(405);
  });

  it('a port in use is one clear configuration error', async () => {
    await start(() => ({ ready: true, reasons: [] }));
    await expect(startMetricsServer({ host: '127.0.0.1', port: server!.address.port }, { metrics: async () => '', readiness: () => ({ ready: true, reasons: [] }) })).rejects.toMatchObject({
      code: 'TESSERA_ERR_INVALID_CONFIG',
      message: expect.stringMatching(/cannot listen \(EADDRINUSE\)/),
    });
  });
});
