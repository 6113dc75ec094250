// The Docker monitor against a fake engine: resync, per-container ordering, concurrency across
// containers, updates, restarts, engine loss and reconnect, stop. The real engine is exercised
// by test/integration/docker-monitor.test.ts.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createDockerMonitor, type DockerEngine, type DockerMonitor, type DockerPu, type DockerPuStop, type InspectLike } from '../../../src/monitors/docker/index.js';
import { TesseraError } from '../../../src/errors.js';

const FIXTURES = new URL('../../fixtures/docker/', import.meta.url);
const fixture = (name: string): InspectLike => JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8')) as InspectLike;

function container(id: string, pid: number, over: { labels?: Record<string, string>; ip?: string; paused?: boolean; running?: boolean; name?: string } = {}): InspectLike {
  const i = structuredClone(fixture('bridge'));
  i.Id = id;
  i.Name = `/${over.name ?? id}`;
  i.State = { ...i.State, Running: over.running ?? true, Paused: over.paused ?? false, Pid: over.running === false ? 0 : pid };
  i.Config!.Labels = over.labels ?? { app: 'web' };
  i.NetworkSettings!.Networks = { bridge: { IPAddress: over.ip ?? '10.213.200.2' } };
  return i;
}

/** A scriptable engine: current state per container, optional per-call inspect delays, one event stream at a time. */
class FakeEngine {
  state = new Map<string, InspectLike>();
  /** Per container, delays (ms) for the next inspect calls, consumed in order. */
  delays = new Map<string, number[]>();
  /** Per container, states returned by the next inspect calls (consumed in order) before `state`. */
  scripted = new Map<string, Array<InspectLike | null>>();
  inspectCalls: string[] = [];
  stream: PassThrough | null = null;
  streamsOpened = 0;
  refuse = false;

  readonly engine = {
    listRunning: async () => [...this.state.entries()].filter(([, i]) => i.State?.Running).map(([id]) => id),
    inspect: async (id: string) => {
      this.inspectCalls.push(id);
      const answer = this.scripted.get(id)?.length ? this.scripted.get(id)!.shift()! : (this.state.get(id) ?? null);
      const d = this.delays.get(id)?.shift();
      if (d) await new Promise((r) => setTimeout(r, d));
      return answer === null ? null : structuredClone(answer);
    },
    events: async (signal: AbortSignal) => {
      if (this.refuse) throw Object.assign(new Error('connect ECONNREFUSED /fake.sock'), { code: 'ECONNREFUSED' });
      const s = new PassThrough();
      signal.addEventListener('abort', () => s.destroy());
      this.stream = s;
      this.streamsOpened++;
      return s;
    },
  } satisfies DockerEngine;

  send(ev: object | string): void {
    this.stream!.write(typeof ev === 'string' ? ev : `${JSON.stringify(ev)}\n`);
  }
  event(action: string, id: string): void {
    this.send({ Type: 'container', Action: action, Actor: { ID: id, Attributes: {} } });
  }
}

type Rec = ['start', DockerPu] | ['update', DockerPu, DockerPu] | ['stop', DockerPuStop] | ['connected'] | ['disconnected', TesseraError];

function record(m: DockerMonitor): Rec[] {
  const out: Rec[] = [];
  m.on('pu-start', (pu) => out.push(['start', pu]));
  m.on('pu-update', (pu, prev) => out.push(['update', pu, prev]));
  m.on('pu-stop', (s) => out.push(['stop', s]));
  m.on('connected', () => out.push(['connected']));
  m.on('disconnected', (e) => out.push(['disconnected', e]));
  return out;
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);
let monitors: DockerMonitor[] = [];
afterEach(async () => {
  await Promise.all(monitors.map((m) => m.stop()));
  monitors = [];
});
function make(fake: FakeEngine, extra: Parameters<typeof createDockerMonitor>[0] = {}): { m: DockerMonitor; rec: Rec[] } {
  const m = createDockerMonitor({ engine: fake.engine, socketPath: '/fake.sock', reconnectMinMs: 10, reconnectMaxMs: 40, ...extra });
  monitors.push(m);
  return { m, rec: record(m) };
}

describe('docker monitor (fake engine)', () => {
  it('start() reports every running container once, then connected', async () => {
    const f = new FakeEngine();
    f.state.set(A, container(A, 100, { labels: { app: 'nginx' } }));
    f.state.set(B, container(B, 200, { ip: '10.213.200.3' }));
    f.state.set(C, container(C, 0, { running: false }));
    const { m, rec } = make(f);
    await m.start();
    expect(rec.map((r) => r[0])).toEqual(['start', 'start', 'connected']);
    const started = rec.filter((r) => r[0] === 'start').map((r) => r[1] as DockerPu);
    expect(started.map((p) => [p.id, p.pid, p.labels.includes('app=nginx')]).sort()).toEqual([
      [A, 100, true],
      [B, 200, false],
    ]);
    expect(started.find((p) => p.id === B)!.ip).toBe('10.213.200.3');
    expect(m.containers().map((p) => p.id).sort()).toEqual([A, B]);
    expect(m.connected).toBe(true);
  });

  it('events of one container are handled in order even when the first inspect is slower', async () => {
    const f = new FakeEngine();
    const { m, rec } = make(f);
    await m.start();
    // start is inspected slowly; die needs no inspect: without per-container ordering the
    // die would be handled first and the container would stay "running".
    f.scripted.set(A, [container(A, 100)]);
    f.delays.set(A, [80]);
    f.event('start', A);
    f.event('die', A);
    await until(() => rec.filter((r) => r[0] === 'stop').length === 1);
    expect(rec.map((r) => r[0])).toEqual(['connected', 'start', 'stop']);
    expect((rec[2]![1] as DockerPuStop)).toEqual({ id: A, name: A, reason: 'stopped' });
    expect(m.containers()).toEqual([]);
  });

  it('different containers do not wait for each other', async () => {
    const f = new FakeEngine();
    const { m, rec } = make(f);
    await m.start();
    f.state.set(A, container(A, 100));
    f.state.set(B, container(B, 200));
    f.delays.set(A, [100]);
    f.event('start', A);
    f.event('start', B);
    await until(() => rec.filter((r) => r[0] === 'start').length === 2);
    expect(rec.filter((r) => r[0] === 'start').map((r) => (r[1] as DockerPu).id)).toEqual([B, A]);
  });

  it('network connect, pause and rename are updates; an event that changes nothing emits nothing', async () => {
    const f = new FakeEngine();
    f.state.set(A, container(A, 100));
    const { m, rec } = make(f);
    await m.start();
    f.state.set(A, container(A, 100, { ip: '10.213.201.7' }));
    f.send({ Type: 'network', Action: 'connect', Actor: { ID: 'net1', Attributes: { container: A, name: 'n', type: 'bridge' } } });
    await until(() => rec.length === 3);
    const [, pu, prev] = rec[2] as ['update', DockerPu, DockerPu];
    expect([prev.ip, pu.ip]).toEqual(['10.213.200.2', '10.213.201.7']);

    f.state.set(A, container(A, 100, { ip: '10.213.201.7', paused: true }));
    f.event('pause', A);
    await until(() => rec.length === 4);
    expect((rec[3]![1] as DockerPu).paused).toBe(true);

    f.state.set(A, container(A, 100, { ip: '10.213.201.7', paused: true, name: 'renamed' }));
    f.event('rename', A);
    await until(() => rec.length === 5);
    expect((rec[4]![1] as DockerPu).systemLabels).toContain('@sys:name=renamed');

    const calls = f.inspectCalls.length;
    f.event('unpause', A); // but the fake still says paused: nothing changed
    await until(() => f.inspectCalls.length === calls + 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(rec).toHaveLength(5);
  });

  it('die then destroy stops once; a restart with a new PID 1 is a stop then a start', async () => {
    const f = new FakeEngine();
    f.state.set(A, container(A, 100));
    f.state.set(B, container(B, 200));
    const { m, rec } = make(f);
    await m.start();
    f.event('die', A);
    f.event('destroy', A);
    f.state.set(B, container(B, 300));
    f.event('start', B);
    await until(() => rec.filter((r) => r[0] === 'start').length === 3);
    await new Promise((r) => setTimeout(r, 20));
    const tail = rec.slice(3).map((r) => (r[0] === 'stop' ? `stop ${r[1].id[0]} ${r[1].reason}` : r[0] === 'start' ? `start ${r[1].id[0]} ${r[1].pid}` : r[0]));
    expect(tail.filter((t) => t.includes(' a '))).toEqual(['stop a stopped']);
    expect(tail.filter((t) => t.includes(' b '))).toEqual(['stop b restarted', 'start b 300']);
  });

  it('die stops the PU even when the engine no longer answers inspect (engine shutting down)', async () => {
    const f = new FakeEngine();
    f.state.set(A, container(A, 100));
    const { m, rec } = make(f);
    await m.start();
    f.engine.inspect = async () => {
      throw new Error('connect ENOENT /fake.sock');
    };
    f.event('die', A);
    await until(() => rec.some((r) => r[0] === 'stop'));
    expect(rec.at(-1)).toEqual(['stop', { id: A, name: A, reason: 'stopped' }]);
  });

  it('the real event stream of one container life (events.jsonl) is parsed and mapped to that container', async () => {
    const lines = readFileSync(new URL('events.jsonl', FIXTURES), 'utf8').trim().split('\n');
    const id = (JSON.parse(lines[0]!) as { id: string }).id;
    const inspecting = lines.filter((l) => /"Action":"(start|pause|unpause|connect|disconnect)"/.test(l)).length;
    expect(lines.filter((l) => /"Action":"(die|destroy)"/.test(l))).toHaveLength(2);
    const f = new FakeEngine();
    f.state.set(id, container(id, 100));
    // What the engine answers at each inspect: running (unchanged: no update) until it died,
    // then exited; after destroy, gone.
    const dieAt = lines.findIndex((l) => l.includes('"Action":"die"'));
    const destroyAt = lines.findIndex((l) => l.includes('"Action":"destroy"'));
    f.scripted.set(id, [
      container(id, 100),
      ...lines
        .map((l, i) => [l, i] as const)
        .filter(([l]) => /"Action":"(start|pause|unpause|connect|disconnect)"/.test(l))
        .map(([, i]) => (i < dieAt ? container(id, 100) : i < destroyAt ? container(id, 0, { running: false }) : null)),
    ]);
    const { m, rec } = make(f);
    await m.start();
    // split the stream at awkward places: lines may arrive in pieces
    const text = lines.join('\n') + '\n';
    for (let i = 0; i < text.length; i += 97) f.send(text.slice(i, i + 97));
    await until(() => rec.some((r) => r[0] === 'stop'));
    await new Promise((r) => setTimeout(r, 30));
    expect(f.inspectCalls).toEqual(Array(1 + inspecting).fill(id)); // resync + one per relevant event
    expect(inspecting).toBeGreaterThanOrEqual(6); // start, pause, unpause, network connect/disconnect
    expect(rec.map((r) => r[0])).toEqual(['start', 'connected', 'stop']); // create, kill, stop ignored; destroy after die: nothing
  });

  it('reconnects after the engine goes away and resyncs what changed meanwhile', async () => {
    const f = new FakeEngine();
    f.state.set(A, container(A, 100));
    f.state.set(B, container(B, 200));
    const { m, rec } = make(f);
    await m.start();
    f.refuse = true;
    f.stream!.end(); // engine stops
    await until(() => rec.some((r) => r[0] === 'disconnected'));
    expect(m.connected).toBe(false);
    const err = rec.find((r) => r[0] === 'disconnected')![1] as TesseraError;
    expect(err).toBeInstanceOf(TesseraError);
    expect(err.code).toBe('TESSERA_ERR_DOCKER');
    expect(err.message).toContain('/fake.sock');
    // while it is down: A removed, B restarted, C started
    f.state.delete(A);
    f.state.set(B, container(B, 250));
    f.state.set(C, container(C, 300));
    await new Promise((r) => setTimeout(r, 60)); // a few refused attempts
    f.refuse = false;
    await until(() => rec.filter((r) => r[0] === 'connected').length === 2);
    expect(f.streamsOpened).toBe(2);
    const after = rec.slice(rec.findIndex((r) => r[0] === 'disconnected') + 1);
    const summary = after.map((r) => (r[0] === 'stop' ? `stop ${r[1].id[0]} ${r[1].reason}` : r[0] === 'start' ? `start ${r[1].id[0]}` : r[0]));
    expect(summary.sort()).toEqual(['connected', 'start b', 'start c', 'stop a removed', 'stop b restarted']);
    expect(m.containers().map((p) => p.id).sort()).toEqual([B, C]);
  });

  it('start() rejects with TESSERA_ERR_DOCKER naming the socket, and can be retried', async () => {
    const f = new FakeEngine();
    f.refuse = true;
    const { m } = make(f);
    const err = await m.start().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(TesseraError);
    expect((err as TesseraError).code).toBe('TESSERA_ERR_DOCKER');
    expect((err as TesseraError).message).toMatch(/Docker engine at \/fake\.sock: .*ECONNREFUSED/);
    f.refuse = false;
    await m.start();
    expect(m.connected).toBe(true);
  });

  it('stop() closes the stream; later events are not processed', async () => {
    const f = new FakeEngine();
    const { m, rec } = make(f);
    await m.start();
    const stream = f.stream!;
    await m.stop();
    expect(stream.destroyed).toBe(true);
    expect(m.connected).toBe(false);
    f.state.set(A, container(A, 100));
    await new Promise((r) => setTimeout(r, 30));
    expect(f.streamsOpened).toBe(1); // no reconnect after a deliberate stop
    expect(rec.map((r) => r[0])).toEqual(['connected']);
    await m.stop(); // idempotent
  });

  it('reads the container\'s net_cls cgroup from /proc/PID/cgroup', async () => {
    const proc = mkdtempSync(join(tmpdir(), 'tessera-proc-'));
    try {
      mkdirSync(join(proc, '100'));
      writeFileSync(join(proc, '100', 'cgroup'), `12:pids:/docker/${A}\n10:net_cls,net_prio:/docker/${A}\n0::/\n`);
      const f = new FakeEngine();
      f.state.set(A, container(A, 100));
      f.state.set(B, container(B, 200)); // no /proc entry: no cgroup
      const { m } = make(f, { procRoot: proc });
      await m.start();
      const byId = new Map(m.containers().map((p) => [p.id, p]));
      expect(byId.get(A)!.netClsCgroup).toBe(`/docker/${A}`);
      expect(byId.get(B)!.netClsCgroup).toBeUndefined();
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });

  it('validates options once, naming the fix', () => {
    expect(() => createDockerMonitor({ socketPath: 'docker.sock' })).toThrow(/absolute path/);
    expect(() => createDockerMonitor({ reconnectMinMs: 0 })).toThrow(/positive integer/);
  });
});

describe('docker monitor: created containers (runtime shim enrollment)', () => {
  const createEvent = (f: FakeEngine, id: string, attrs: Record<string, string>): void => f.send({ Type: 'container', Action: 'create', Actor: { ID: id, Attributes: attrs } });

  it('a create event is remembered without an inspect: labels, image and name apart', async () => {
    const f = new FakeEngine();
    const { m, rec } = make(f);
    await m.start();
    createEvent(f, A, { app: 'nginx', 'org.tessera.image': 'busybox', image: 'tessera/busybox:local', name: 'web' });
    const c = await m.created(A, 1000);
    expect(c).toEqual({ id: A, name: 'web', image: 'tessera/busybox:local', labels: { app: 'nginx', 'org.tessera.image': 'busybox' } });
    expect(f.inspectCalls).toEqual([]);
    expect(rec.map((r) => r[0])).toEqual(['connected']);
  });

  it('created() waits for an event that has not come yet, and gives up after its bound', async () => {
    const f = new FakeEngine();
    const { m } = make(f);
    await m.start();
    const waiting = m.created(B, 1000);
    createEvent(f, B, { image: 'i', name: 'late' });
    expect((await waiting)?.name).toBe('late');
    expect(await m.created(C, 30)).toBeUndefined();
  });

  it('a not-running inspect between create and start does not end an enrolled container; destroy does', async () => {
    const f = new FakeEngine();
    const { m, rec } = make(f);
    await m.start();
    createEvent(f, A, { image: 'i', name: 'web' });
    await m.created(A, 1000);
    // a network connect during the start: inspect says not running yet
    f.state.set(A, container(A, 0, { running: false }));
    f.send({ Type: 'network', Action: 'connect', Actor: { ID: 'n', Attributes: { container: A } } });
    await until(() => f.inspectCalls.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(rec.filter((r) => r[0] === 'stop')).toEqual([]);
    f.event('destroy', A);
    await until(() => rec.some((r) => r[0] === 'stop'));
    expect(rec.find((r) => r[0] === 'stop')![1]).toEqual({ id: A, name: 'web', reason: 'removed' });
    expect(await m.created(A, 10)).toBeUndefined();
  });

  it('the start forgets the created entry; the map is bounded', async () => {
    const f = new FakeEngine();
    const { m } = make(f);
    await m.start();
    createEvent(f, A, { image: 'i', name: 'web' });
    await m.created(A, 1000);
    f.state.set(A, container(A, 100));
    f.event('start', A);
    await until(() => m.containers().length === 1);
    expect(await m.created(A, 10)).toBeUndefined();
    for (let i = 0; i < 600; i++) createEvent(f, i.toString(16).padStart(64, '0'), { image: 'i', name: `c${i}` });
    expect((await m.created((599).toString(16).padStart(64, '0'), 1000))?.name).toBe('c599');
    expect(await m.created('0'.repeat(64), 10)).toBeUndefined();
  });
});
