// Readiness and health follow the datapath's workers: a worker that dies after binding its
// queue makes /readyz answer "not ready" and status.health name its queue until the pool's
// restart binds the queue again; then both are back. The pool runs with fake workers (no
// root, no queue), so the restart is the pool's own.

import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createHealth, followWorkers, type HealthService } from '../../../src/daemon/health.js';
import { createDatapath, type Datapath, type DatapathOptions, type DatapathWorker } from '../../../src/datapath/pool.js';
import type { FromWorker, ToWorker, WorkerConfig } from '../../../src/datapath/messages.js';

class Worker extends EventEmitter implements DatapathWorker {
  constructor(readonly config: WorkerConfig) {
    super();
  }
  postMessage(m: ToWorker): void {
    if (m.type === 'stop') queueMicrotask(() => this.emit('exit', 0));
  }
  terminate(): Promise<number> {
    this.emit('exit', 1);
    return Promise.resolve(1);
  }
  ready(): void {
    this.emit('message', { type: 'ready', queueNum: this.config.queueNum } satisfies FromWorker);
  }
}

// The fake workers read only their queue number: the rest of a worker's config is not used here.
const OPTIONS = { queueBase: 20, queues: 2 } as DatapathOptions;

describe('health follows the datapath workers', () => {
  let made: Worker[];
  let dp: Datapath;
  let health: HealthService;

  beforeEach(() => {
    vi.useFakeTimers();
    made = [];
    dp = createDatapath(OPTIONS, {
      createWorker: (config) => {
        const w = new Worker(config);
        made.push(w);
        return w;
      },
      restartDelayMs: 100,
      restartDelayMaxMs: 400,
    });
    dp.on('error', () => {}); // the pool reports the death as an error too; the daemon logs it
    health = createHealth(() => new Date('2026-12-06T09:00:00.000Z'));
    followWorkers(health, dp);
  });
  afterEach(async () => {
    const stopping = dp.stop();
    await vi.runAllTimersAsync();
    await stopping;
    vi.useRealTimers();
  });

  it('a worker that died is not ready and a named problem until its restart binds the queue again', async () => {
    const starting = dp.start();
    for (const w of made) w.ready();
    await starting;
    for (const k of ['rules', 'policy', 'workers'] as const) health.setReady(k, true);
    expect(health.readiness()).toEqual({ ready: true, reasons: [] });
    expect(health.health().state).toBe('ok');

    made.find((w) => w.config.queueNum === 21)!.emit('exit', 1);
    expect(health.readiness()).toEqual({ ready: false, reasons: ['datapath worker restarting: queue 21 not bound'] });
    expect(health.health()).toEqual({
      state: 'degraded',
      problems: [{ component: 'datapath-queue-21', since: '2026-12-06T09:00:00.000Z', message: expect.stringMatching(/^the datapath worker of queue 21 died and is restarting: the queue's handshakes are dropped/) }],
    });

    // The first respawn dies before it is ready: still down.
    await vi.advanceTimersByTimeAsync(100);
    const first = made.filter((w) => w.config.queueNum === 21);
    expect(first).toHaveLength(2);
    first[1]!.emit('exit', 1);
    expect(health.readiness().ready).toBe(false);

    // The next one binds its queue: ready and healthy again.
    await vi.advanceTimersByTimeAsync(200);
    const again = made.filter((w) => w.config.queueNum === 21);
    expect(again).toHaveLength(3);
    expect(health.readiness().ready).toBe(false);
    again[2]!.ready();
    expect(health.readiness()).toEqual({ ready: true, reasons: [] });
    expect(health.health()).toEqual({ state: 'ok', problems: [] });
  });

  it('a stop is not a death: workers ended by stop() leave health alone', async () => {
    const starting = dp.start();
    for (const w of made) w.ready();
    await starting;
    health.setReady('workers', true);
    const stopping = dp.stop();
    await vi.runAllTimersAsync();
    await stopping;
    expect(health.health().problems).toEqual([]);
  });
});

describe('the health service with a fake pool', () => {
  it('keeps each queue apart, with its first since, and the other readiness reasons first', () => {
    let t = Date.parse('2026-12-06T09:00:00.000Z');
    const h = createHealth(() => new Date(t));
    const pool = new EventEmitter();
    followWorkers(h, pool as unknown as Parameters<typeof followWorkers>[1]);
    h.setReady('policy', true);
    h.setReady('workers', true);
    pool.emit('worker', 3, false);
    t += 1000;
    pool.emit('worker', 1, false);
    pool.emit('worker', 3, false); // reported again: since stays
    expect(h.readiness()).toEqual({ ready: false, reasons: ['host rules not applied', 'datapath worker restarting: queue 1, 3 not bound'] });
    expect(h.health().problems.map((p) => [p.component, p.since])).toEqual([
      ['datapath-queue-3', '2026-12-06T09:00:00.000Z'],
      ['datapath-queue-1', '2026-12-06T09:00:01.000Z'],
    ]);
    pool.emit('worker', 3, true);
    h.setReady('rules', true);
    expect(h.readiness()).toEqual({ ready: false, reasons: ['datapath worker restarting: queue 1 not bound'] });
    pool.emit('worker', 1, true);
    expect(h.readiness()).toEqual({ ready: true, reasons: [] });
  });
});
