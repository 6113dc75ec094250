// The datapath pool with fake workers (no root, no queue): start, restart of a dead worker,
// replay of the latest snapshot, policy and namespace queues to the respawned one, and a
// respawn that dies before it is ready, retried with backoff until it holds.

import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDatapath, type Datapath, type DatapathWorker } from '../../../src/datapath/pool.js';
import type { FromWorker, Snapshot, ToWorker, WorkerConfig } from '../../../src/datapath/messages.js';

class FakeWorker extends EventEmitter implements DatapathWorker {
  readonly sent: ToWorker[] = [];
  terminated = false;
  constructor(readonly config: WorkerConfig) {
    super();
  }
  postMessage(m: ToWorker): void {
    this.sent.push(m);
    // A worker told to stop exits, as queue.worker.ts does.
    if (m.type === 'stop') queueMicrotask(() => this.exit(0));
  }
  terminate(): Promise<number> {
    this.terminated = true;
    this.exit(1);
    return Promise.resolve(1);
  }
  say(m: FromWorker): void {
    this.emit('message', m);
  }
  ready(): void {
    this.say({ type: 'ready', queueNum: this.config.queueNum });
  }
  exit(code: number): void {
    this.emit('exit', code);
  }
  sentOf<T extends ToWorker['type']>(type: T): Extract<ToWorker, { type: T }>[] {
    return this.sent.filter((m): m is Extract<ToWorker, { type: T }> => m.type === type);
  }
}

const OPTIONS = {
  queueBase: 10,
  queues: 2,
  maxLen: 1024,
  failOpen: false,
  mode: 'handshake' as const,
  trust: { mode: 'psk' as const, secret: new Uint8Array(32) },
  hostSecret: new Uint8Array(32),
  clockSkewSeconds: 30,
  handshake: {},
  policyText: null,
};

const snap = (id: string): Snapshot => ({ pus: [{ index: 1, id, labels: ['app=web'], tokens: [] }], ports: [[80, 1]] });

describe('datapath pool', () => {
  let made: FakeWorker[];
  let errors: Error[];
  let dp: Datapath;
  const of = (q: number) => made.filter((w) => w.config.queueNum === q);
  const latest = (q: number) => of(q).at(-1)!;

  beforeEach(() => {
    vi.useFakeTimers();
    made = [];
    errors = [];
    dp = createDatapath(OPTIONS, {
      createWorker: (config) => {
        const w = new FakeWorker(config);
        made.push(w);
        return w;
      },
      restartDelayMs: 100,
      restartDelayMaxMs: 1000,
    });
    dp.on('error', (e) => errors.push(e));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  async function started(): Promise<void> {
    const p = dp.start();
    for (const w of made) w.ready();
    await p;
  }

  it('starts one worker per queue and resolves once every one is ready, each given the snapshot', async () => {
    dp.update(snap('before-start'));
    let done = false;
    const p = dp.start().then(() => (done = true));
    expect(made.map((w) => w.config.queueNum)).toEqual([10, 11]);
    made[0]!.ready();
    await Promise.resolve();
    expect(done).toBe(false);
    made[1]!.ready();
    await p;
    for (const w of made) expect(w.sentOf('snapshot').map((m) => m.snapshot.pus[0]!.id)).toEqual(['before-start']);
  });

  it('posts a delta (not every PU) per change, and gives a restarted worker the whole state the deltas made', async () => {
    await started();
    dp.update({ pus: [{ index: 1, id: 'a', labels: [], tokens: [] }, { index: 2, id: 'b', labels: [], tokens: [] }], ports: [[80, 1]] });
    dp.apply({ removed: [], set: [{ index: 3, id: 'c', labels: [], tokens: [] }] });
    dp.apply({ removed: [1], set: [{ index: 1, id: 'a2', labels: [], tokens: [] }], ports: [[443, 3]] });
    dp.apply({ removed: [], set: [] });
    for (const w of made) {
      expect(w.sentOf('delta').map((m) => m.delta.set.map((p) => p.id))).toEqual([['c'], ['a2']]);
      expect(w.sentOf('snapshot')).toHaveLength(2);
    }
    const dead = made[0]!;
    dead.exit(1);
    await vi.advanceTimersByTimeAsync(100);
    const respawned = latest(dead.config.queueNum);
    respawned.ready();
    const replay = respawned.sentOf('snapshot');
    expect(replay).toHaveLength(1);
    expect(replay[0]!.snapshot.pus.map((p) => `${p.index}:${p.id}`).sort()).toEqual(['1:a2', '2:b', '3:c']);
    expect(replay[0]!.snapshot.ports).toEqual([[443, 3]]);
    expect(respawned.sentOf('delta')).toHaveLength(0);
  });

  it('fails its start with the first worker error and stops the others', async () => {
    const p = dp.start();
    made[0]!.say({ type: 'fatal', message: 'queue 10 is bound by another process' });
    made[0]!.exit(1);
    await expect(p).rejects.toMatchObject({ code: 'TESSERA_ERR_QUEUE', message: expect.stringContaining('bound by another process') });
    expect(made[1]!.sentOf('stop')).toHaveLength(1);
  });

  it('a worker that exits before ready without a word still fails the start (it used to hang)', async () => {
    const p = dp.start();
    made[1]!.exit(3);
    await expect(p).rejects.toMatchObject({ message: expect.stringContaining('exited (3) before it was ready') });
  });

  it('restarts a dead worker and replays to it the latest snapshot, policy and its namespace queues', async () => {
    await started();
    dp.update(snap('first'));
    const opening = dp.openNamespace({ key: 'pu-c', netns: '/run/netns/c', queueNum: 40, puIndex: 3 });
    const owner = made.find((w) => w.sentOf('ns-open').length === 1)!;
    owner.say({ type: 'ns-opened', key: 'pu-c' });
    await opening;
    const q = owner.config.queueNum;
    owner.exit(1);
    expect(errors.map((e) => e.message)).toEqual([`queue ${q} worker exited (1); restarting`]);
    // While it is down, the control plane moves on: a new snapshot and a new policy.
    dp.update(snap('while-down'));
    dp.setPolicy('version: 1\nrules: []\n');
    expect(of(q)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(of(q)).toHaveLength(2);
    const respawned = latest(q);
    expect(respawned.config.policyText).toBe('version: 1\nrules: []\n');
    respawned.ready();
    expect(respawned.sentOf('snapshot').map((m) => m.snapshot.pus[0]!.id)).toEqual(['while-down']);
    expect(respawned.sentOf('ns-open').map((m) => m.ns.key)).toEqual(['pu-c']);
    // The other worker was not restarted and got every update.
    const other = latest(q === 10 ? 11 : 10);
    expect(of(other.config.queueNum)).toHaveLength(1);
    expect(other.sentOf('snapshot').map((m) => m.snapshot.pus.length && m.snapshot.pus[0]!.id)).toEqual([0, 'first', 'while-down']);
  });

  it('retries a respawned worker that dies before ready, with growing delays, until one holds', async () => {
    await started();
    made[0]!.exit(1);
    const gaps: number[] = [];
    let last = Date.now();
    for (let attempt = 0; attempt < 5; attempt++) {
      const n = of(10).length;
      for (let waited = 0; of(10).length === n && waited < 5000; waited += 10) await vi.advanceTimersByTimeAsync(10);
      expect(of(10).length, `attempt ${attempt + 1} was never made`).toBe(n + 1);
      gaps.push(Date.now() - last);
      last = Date.now();
      // The respawn fails before it is ready: the queue is still held by the dead thread.
      latest(10).say({ type: 'fatal', message: 'bind: address in use' });
      latest(10).exit(1);
    }
    expect(gaps).toEqual([100, 200, 400, 800, 1000]);
    await vi.advanceTimersByTimeAsync(0);
    expect(errors.filter((e) => /address in use/.test(e.message))).toHaveLength(5);
    await vi.advanceTimersByTimeAsync(1000);
    latest(10).ready();
    expect(latest(10).sentOf('snapshot')).toHaveLength(1);
    // Once it holds, nothing more is spawned.
    const count = made.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(made.length).toBe(count);
  });

  it('does not restart anything after stop(), even a worker whose restart was pending', async () => {
    await started();
    made[0]!.exit(1);
    const stopping = dp.stop();
    await vi.advanceTimersByTimeAsync(0);
    await stopping;
    expect(made[1]!.sentOf('stop')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(5000);
    expect(made).toHaveLength(2);
  });

  it('reports flows and stats from its workers', async () => {
    await started();
    const flows: unknown[] = [];
    dp.on('flows', (r) => flows.push(...r));
    made[0]!.say({ type: 'flows', records: [[1, 'ingress', 'ack', 'accept', 'ok', 'r1', 'pu', ['app=web'], 80, '10.213.0.1', 40000, 'h', 'p', ['app=web'], null]] });
    expect(flows).toMatchObject([{ direction: 'ingress', stage: 'ack', remoteAddr: '10.213.0.1', ruleId: 'r1' }]);
    made[1]!.say({ type: 'stats', stats: { queueNum: 11, handshake: null, caches: null, handling: { buckets: [], sumUs: 0, count: 0 }, queue: { received: 5, verdicts: 5, enobufs: 0, sendErrors: 0, recvErrors: 0, batches: 1 }, errors: 0 } });
    expect(dp.stats().map((s) => s.queue.received)).toEqual([5]);
  });

  it('tells workers whether accept records cross, also a restarted one; counts the unsent ones; gathers the kept ones for revoke', async () => {
    const started = dp.start();
    made.forEach((w) => w.ready());
    await started;
    dp.setFollow(false);
    dp.setFollow(false); // no repeat
    expect(made.map((w) => w.sentOf('follow'))).toEqual([[{ type: 'follow', on: false }], [{ type: 'follow', on: false }]]);
    const unsent: number[] = [];
    dp.on('unsentAccepts', (n) => void unsent.push(n));
    const stats = (q: number, n: number) => ({ queueNum: q, handshake: null, caches: null, handling: { buckets: [], sumUs: 0, count: 0 }, queue: { received: 0, verdicts: 0, enobufs: 0, sendErrors: 0, recvErrors: 0, batches: 0 }, errors: 0, unsentAccepts: n });
    made[0]!.say({ type: 'stats', stats: stats(10, 3) });
    made[0]!.say({ type: 'stats', stats: stats(10, 5) });
    made[0]!.say({ type: 'stats', stats: stats(10, 5) });
    expect(unsent).toEqual([3, 2]);
    // A restarted worker is told at once, and counts from zero again.
    made[1]!.exit(1);
    await vi.advanceTimersByTimeAsync(100);
    latest(11).ready();
    expect(latest(11).sentOf('follow')).toEqual([{ type: 'follow', on: false }]);
    latest(11).say({ type: 'stats', stats: stats(11, 4) });
    expect(unsent).toEqual([3, 2, 4]);
    // Revoke's request: every worker's kept records, merged.
    const tuple = (port: number) => [1, 'ingress', 'ack', 'accept', 'ok', 'r1', 'pu-1', ['app=db'], 80, '10.213.0.1', port, 'b', 'pu-2', ['app=web'], null] as never;
    const asked = dp.acceptedFlows();
    const id = made[0]!.sentOf('accepted')[0]!.id;
    made[0]!.say({ type: 'accepted', id, records: [tuple(40001)] });
    latest(11).say({ type: 'accepted', id, records: [tuple(40002)] });
    expect((await asked).map((r) => r.remotePort).sort()).toEqual([40001, 40002]);
    // A worker that does not answer is left out after 2 s.
    const late = dp.acceptedFlows();
    const id2 = made[0]!.sentOf('accepted')[1]!.id;
    made[0]!.say({ type: 'accepted', id: id2, records: [tuple(40003)] });
    await vi.advanceTimersByTimeAsync(2000);
    expect((await late).map((r) => r.remotePort)).toEqual([40003]);
  });
});
