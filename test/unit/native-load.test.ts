// The NFQUEUE addon loads without root, in the main thread and in several worker threads at
// once (it is context-aware), rejects bad arguments with TypeErrors, and lets workers exit.
// Binding a queue needs root and a namespace: see test/integration/native-queue.test.ts.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { createServer, type AddressInfo } from 'node:net';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Native from '../../native/index.js';

const require = createRequire(import.meta.url);
const nativeDir = fileURLToPath(new URL('../../native/', import.meta.url));
const loadWorker = fileURLToPath(new URL('../helpers/native-load-worker.mjs', import.meta.url));

interface LoadReport {
  exports: string[];
  verdict: Record<string, number>;
  metaFields: number;
  listeningWords: number;
  errors: Array<{ name: string; code?: string; message?: string }>;
}

function runWorker(barrier: SharedArrayBuffer, parties: number): Promise<{ report: LoadReport; exitCode: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(loadWorker, { workerData: { barrier, parties } });
    let report: LoadReport | undefined;
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error('worker did not exit within 15 s'));
    }, 15_000);
    w.on('message', (m: LoadReport) => (report = m));
    w.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    w.on('exit', (exitCode) => {
      clearTimeout(timer);
      if (!report) reject(new Error(`worker exited (${exitCode}) without a report`));
      else resolve({ report, exitCode });
    });
  });
}

describe('native addon loading', () => {
  it('loads in the main thread with the documented exports', () => {
    const native = require(join(nativeDir, 'index.cjs')) as typeof Native;
    expect(Object.keys(native).sort()).toEqual(['META_FIELDS', 'Queue', 'VERDICT', 'hmacPrepare', 'hmacPrepared', 'hmacSha256', 'hmacStateBytes', 'listeningSockets', 'listeningSocketsCgroup', 'nftGeneration', 'rawClose', 'rawSend', 'rawSocket', 'sha256']);
    expect(native.VERDICT).toEqual({ DROP: 0, ACCEPT: 1, REPEAT: 4 });
    expect(Object.isFrozen(native.VERDICT)).toBe(true);
    expect(native.META_FIELDS).toBe(8);
    expect(typeof native.Queue).toBe('function');
  });

  it('rejects bad arguments with a TypeError carrying TESSERA_ERR_INVALID_ARGUMENT', () => {
    const { Queue } = require(join(nativeDir, 'index.cjs')) as typeof Native;
    const bad: Array<[unknown, unknown, RegExp]> = [
      [undefined, () => {}, /options must be an object/],
      [{}, () => {}, /queueNum is required/],
      [{ queueNum: -1 }, () => {}, /queueNum must be an integer from 0 to 65535/],
      [{ queueNum: 1, maxLen: 0 }, () => {}, /maxLen/],
      [{ queueNum: 1, copyRange: 70000 }, () => {}, /copyRange/],
      [{ queueNum: 1, batchSize: 5000 }, () => {}, /batchSize/],
      [{ queueNum: 1, rcvBufBytes: -5 }, () => {}, /rcvBufBytes/],
      [{ queueNum: 1, failOpen: 1 }, () => {}, /failOpen must be a boolean/],
      [{ queueNum: 1 }, undefined, /onBatch must be a function/],
    ];
    for (const [options, onBatch, message] of bad) {
      let caught: unknown;
      try {
        new Queue(options as Native.QueueOptions, onBatch as (n: number) => void);
      } catch (err) {
        caught = err;
      }
      expect(caught, String(message)).toBeInstanceOf(TypeError);
      expect((caught as TypeError).message).toMatch(message);
      expect((caught as { code?: string }).code).toBe('TESSERA_ERR_INVALID_ARGUMENT');
    }
    // Called without new.
    expect(() => (Queue as unknown as (o: object, f: () => void) => void)({ queueNum: 1 }, () => {})).toThrow(TypeError);
  });

  it('loads in four worker threads at once, and every worker exits cleanly', async () => {
    const parties = 4;
    const barrier = new SharedArrayBuffer(4);
    const results = await Promise.all(Array.from({ length: parties }, () => runWorker(barrier, parties)));
    for (const { report, exitCode } of results) {
      expect(exitCode).toBe(0);
      expect(report.exports).toEqual(['META_FIELDS', 'Queue', 'VERDICT', 'hmacPrepare', 'hmacPrepared', 'hmacSha256', 'hmacStateBytes', 'listeningSockets', 'listeningSocketsCgroup', 'nftGeneration', 'rawClose', 'rawSend', 'rawSocket', 'sha256']);
      expect(report.listeningWords % 2).toBe(0); // listeningSockets() runs in a worker too
      expect(report.verdict).toEqual({ DROP: 0, ACCEPT: 1, REPEAT: 4 });
      expect(report.metaFields).toBe(8);
      expect(report.errors).toHaveLength(6);
      for (const e of report.errors) {
        expect(e.name).toBe('TypeError');
        expect(e.code).toBe('TESSERA_ERR_INVALID_ARGUMENT');
      }
    }
    expect(new Int32Array(barrier)[0]).toBe(parties);
  });

  it('listeningSockets() needs no root: it reports a port this process listens on', async () => {
    const { listeningSockets } = require(join(nativeDir, 'index.cjs')) as typeof Native;
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const words = listeningSockets();
      expect(words).toBeInstanceOf(Uint32Array);
      const ports = words.filter((_, i) => i % 2 === 1);
      expect([...ports]).toContain(port);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('listeningSocketsCgroup() names each socket with its cgroup v2 id: the inode of the cgroup directory of this process', async () => {
    const { listeningSocketsCgroup } = require(join(nativeDir, 'index.cjs')) as typeof Native;
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const words = listeningSocketsCgroup();
      expect(words.length % 4).toBe(0);
      const at = [...words].findIndex((w, i) => i % 4 === 1 && w === port);
      expect(at).toBeGreaterThan(0);
      const id = words[at + 1]! + words[at + 2]! * 2 ** 32;
      // The unified hierarchy's path of this process, from /proc/self/cgroup ("0::/path").
      const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
      const mount = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((m) => existsSync(join(m, 'cgroup.procs')) && existsSync(join(m, line!.slice(3))));
      if (mount) expect(id).toBe(statSync(join(mount, line!.slice(3))).ino);
      else expect(id).toBeGreaterThan(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a missing build fails with a message that names the fix and keeps the cause', () => {
    // A copy of the loader in a directory with no build: node-gyp-build finds nothing.
    const dir = mkdtempSync(join(nativeDir, '..', 'node_modules', '.tessera-native-load-'));
    try {
      copyFileSync(join(nativeDir, 'index.cjs'), join(dir, 'index.cjs'));
      let caught: (Error & { code?: string }) | undefined;
      try {
        require(join(dir, 'index.cjs'));
      } catch (err) {
        caught = err as Error & { code?: string };
      }
      expect(caught).toBeInstanceOf(Error);
      expect(caught!.code).toBe('TESSERA_ERR_NATIVE_LOAD');
      expect(caught!.message).toMatch(/libnetfilter-queue-dev/);
      expect(caught!.message).toMatch(/libmnl-dev/);
      expect(caught!.message).toMatch(/npm rebuild|node-gyp rebuild/);
      expect(caught!.cause).toBeInstanceOf(Error);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
