// packaging/tessera-runc against a fake runc and a fake daemon socket: every call but create
// passes through unchanged; create enrolls, or fails closed after `runc delete --force` with the
// same global options; the escape file and a missing runtime file let it run. The real engine
// is exercised by test/integration/docker-enroll.test.ts.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REPO } from '../../scripts/lib/cluster.js';

const SHIM = join(REPO, 'packaging', 'tessera-runc');
const hasCurl = ['/usr/bin/curl', '/bin/curl', '/usr/local/bin/curl'].some((p) => existsSync(p));

let dir: string;
let server: Server | null = null;
let requests: unknown[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-shim-'));
  requests = [];
  // A runc that records its arguments and writes the pid file of a create.
  writeFileSync(
    join(dir, 'runc'),
    `#!/bin/sh\necho "$*" >>"${dir}/calls"\nprev=""\nfor a in "$@"; do [ "$prev" = --pid-file ] && printf 4242 >"$a"; prev="$a"; done\nexit \${FAKE_RUNC_EXIT:-0}\n`,
  );
  chmodSync(join(dir, 'runc'), 0o755);
});

afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = null;
  rmSync(dir, { recursive: true, force: true });
});

async function daemon(status: number, delayMs = 0): Promise<string> {
  const sock = join(dir, 'd.sock');
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, body: JSON.parse(body) as unknown });
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status === 200 ? '{"enrolled":true}' : '{"error":{"code":"TESSERA_ERR_ENROLL","message":"no"}}');
      }, delayMs);
    });
  });
  await new Promise<void>((r) => server!.listen(sock, () => r()));
  writeFileSync(join(dir, 'runtime'), `socket=${sock}\n`);
  return sock;
}

function shim(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string; calls: string[] }> {
  return new Promise((resolve) => {
    const child = spawn(SHIM, args, {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TESSERA_RUNC: join(dir, 'runc'), TESSERA_RUNTIME_FILE: join(dir, 'runtime'), TESSERA_UNPROTECTED_FILE: join(dir, 'unprotected'), TESSERA_ENROLL_TIMEOUT_S: '1', ...env },
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => {
      const calls = existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : [];
      resolve({ code: code ?? -1, stderr, calls });
    });
  });
}

const ID = 'c'.repeat(64);
const create = (): string[] => ['--root', '/run/x y', '--log', join(dir, 'log.json'), '--log-format', 'json', 'create', '--bundle', dir, '--pid-file', join(dir, 'pid'), ID];

describe.runIf(hasCurl)('tessera-runc (the runtime shim)', () => {
  it('passes every other command through unchanged, exit status included', async () => {
    await daemon(200);
    const r = await shim(['--root', '/r', 'start', ID], { FAKE_RUNC_EXIT: '3' });
    expect(r.code).toBe(3);
    expect(r.calls).toEqual([`--root /r start ${ID}`]);
    expect(requests).toEqual([]);
  });

  it('create: runc create, then the enrollment request, then exit 0', async () => {
    await daemon(200);
    const r = await shim(create());
    expect(r.code).toBe(0);
    expect(r.calls).toHaveLength(1);
    expect(requests).toEqual([{ method: 'POST', url: '/v1/containers/enroll', body: { id: ID, pid: 4242, bundle: dir } }]);
  });

  it('create refused or unanswered: runc delete --force with the same globals, the reason in runc\'s log, exit 1', async () => {
    await daemon(500);
    const r = await shim(create());
    expect(r.code).toBe(1);
    expect(r.calls[1]).toBe(`--root /run/x y --log ${join(dir, 'log.json')} --log-format json delete --force ${ID}`);
    expect(JSON.parse(readFileSync(join(dir, 'log.json'), 'utf8').trim()).msg).toMatch(/^tessera: .*did not enroll.*HTTP 500.*container not started/);
    await new Promise<void>((res) => server!.close(() => res()));
    server = null;
    await daemon(200, 3000); // slower than the bound
    rmSync(join(dir, 'calls'));
    const slow = await shim(create());
    expect(slow.code).toBe(1);
    expect(slow.calls[1]).toContain(`delete --force ${ID}`);
  });

  it('daemon socket gone: fail-closed; the escape file lets the container run unprotected', async () => {
    writeFileSync(join(dir, 'runtime'), `socket=${join(dir, 'gone.sock')}\n`);
    const r = await shim(create());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no tessera daemon at/);
    writeFileSync(join(dir, 'unprotected'), '');
    const escaped = await shim(create());
    expect(escaped.code).toBe(0);
    expect(escaped.stderr).toMatch(/UNPROTECTED/);
  });

  it('no runtime file and no TESSERA_SOCKET: Tessera is not set up here, pass through', async () => {
    const r = await shim(create());
    expect(r.code).toBe(0);
    expect(r.calls).toHaveLength(1);
    // TESSERA_SOCKET in dockerd's environment makes enrollment required even without the file
    const required = await shim(create(), { TESSERA_SOCKET: join(dir, 'gone.sock') });
    expect(required.code).toBe(1);
  });

  it('a failed runc create is returned as is, without asking the daemon', async () => {
    await daemon(200);
    const r = await shim(create(), { FAKE_RUNC_EXIT: '2' });
    expect(r.code).toBe(2);
    expect(requests).toEqual([]);
  });
});
