// One runner for every command: exit statuses from the error table, one line per error
// with its code, did-you-mean for commands, the version from package.json, filesystem
// errors as one line (no spin on /proc), and the daemon's arguments from its table.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../../src/cli/main.js';
import { PRIVILEGED, parseDaemonArgs } from '../../../src/bin/daemon.js';
import type { TesseraError } from '../../../src/errors.js';
import { capture } from './fake-daemon.js';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };

async function run(argv: string[]) {
  const c = capture();
  const code = await runCli(argv, c.io, PRIVILEGED);
  return { code, out: c.out.join('\n'), err: c.err.join('\n'), errLines: c.err };
}

describe('the runner', () => {
  it('prints the version of package.json', async () => {
    expect((await run(['--version'])).out).toBe(`tessera ${pkg.version}`);
    expect((await run(['version'])).out).toBe(`tessera ${pkg.version}`);
    expect(JSON.parse((await run(['version', '--json'])).out)).toMatchObject({ version: pkg.version });
  });

  it('answers an unknown command with status 2 and the nearest command', async () => {
    const r = await run(['stauts']);
    expect(r.code).toBe(2);
    expect(r.errLines[0]).toBe('tessera: unknown command "stauts" (did you mean status?) [TESSERA_ERR_INVALID_ARGUMENT]');
    expect((await run(['--verison'])).errLines[0]).toMatch(/unknown option --verison \(did you mean --version\?\)/);
    expect((await run(['--socket', '/s', 'status'])).errLines[0]).toBe('tessera: options go after the command: tessera <command> --socket ... [TESSERA_ERR_INVALID_ARGUMENT]');
  });

  it('answers an unknown option with status 2, one line with the code, and a pointer to help', async () => {
    const r = await run(['status', '--jsn']);
    expect(r.code).toBe(2);
    expect(r.errLines).toEqual(["tessera status: unknown option --jsn (did you mean --json?) [TESSERA_ERR_INVALID_ARGUMENT]", "See 'tessera status --help'."]);
    const sub = await run(['policy', 'explian']);
    expect(sub.code).toBe(2);
    expect(sub.errLines[0]).toMatch(/unknown subcommand "explian" \(did you mean explain\?\)/);
  });

  it('prints help for every command with status 0, to stdout', async () => {
    for (const c of ['daemon', 'run', 'status', 'flows', 'cleanup', 'policy', 'ca', 'psk', 'version']) {
      const r = await run([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.out, c).toMatch(/^Usage:/);
      expect(r.err).toBe('');
    }
    expect((await run(['help', 'flows'])).out).toContain('--from-label');
    expect((await run([])).out).toContain('Commands:');
  });

  it('refuses tessera run without labels, without a command, or with a reserved label', async () => {
    const noLabel = await run(['run', '--', 'true']);
    expect([noLabel.code, noLabel.errLines[0]]).toEqual([2, 'tessera run: --label is required [TESSERA_ERR_INVALID_ARGUMENT]']);
    const noCommand = await run(['run', '--label', 'app=x']);
    expect(noCommand.code).toBe(2);
    expect(noCommand.err).toMatch(/needs a command after --/);
    const bare = await run(['run', '-l', 'app=x', 'curl']);
    expect(bare.err).toMatch(/unexpected argument "curl" \(put the command after --\)/);
    const reserved = await run(['run', '--label', '@sys:x=y', '--', 'true']);
    expect(reserved.code).toBe(1); // TESSERA_ERR_INVALID_LABEL: exit 1 in the error table
    expect(reserved.err).toMatch(/reserved.*\[TESSERA_ERR_INVALID_LABEL\]/);
  });

  it('an unreachable daemon is one line with its code and status 1', async () => {
    const r = await run(['status', '--socket', '/nonexistent/tessera.sock']);
    expect(r.code).toBe(1);
    expect(r.errLines).toHaveLength(1);
    expect(r.err).toMatch(/^tessera status: cannot reach the tessera daemon at \/nonexistent\/tessera.sock: no socket there.*\[TESSERA_ERR_DAEMON_UNREACHABLE\]$/);
  });

  describe('filesystem errors: one line with the path, the errno and a code', () => {
    it('ca init --out under a file', async () => {
      const r = await run(['ca', 'init', '--out', '/dev/null/x']);
      expect(r.code).toBe(1);
      expect(r.errLines).toEqual(['tessera ca: cannot create directory /dev/null/x: /dev/null is not a directory (ENOTDIR) [TESSERA_ERR_FILESYSTEM]']);
    });

    it('ca init --out under /proc ends (Node\'s recursive mkdir retried ENOENT there forever)', async () => {
      const r = await run(['ca', 'init', '--out', '/proc/tessera-x/y']);
      expect(r.code).toBe(1);
      expect(r.errLines).toEqual(['tessera ca: cannot mkdir /proc/tessera-x: no such file or directory (ENOENT) [TESSERA_ERR_FILESYSTEM]']);
    });

    it('psk init over an existing file, policy check of a missing file', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
      try {
        writeFileSync(join(dir, 'psk'), 'x');
        const r = await run(['psk', 'init', '--out', join(dir, 'psk')]);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(/already exists: not overwriting key material \[TESSERA_ERR_INVALID_ARGUMENT\]/);
        const m = await run(['policy', 'check', join(dir, 'none.yaml')]);
        expect([m.code, m.errLines.length]).toEqual([1, 1]);
        expect(m.err).toMatch(/cannot open .*none.yaml: no such file or directory \(ENOENT\) \[TESSERA_ERR_FILESYSTEM\]/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('writes key material where it can, and prints JSON for policy check', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
      try {
        const r = await run(['ca', 'init', '--out', join(dir, 'a', 'b'), '--json']);
        expect(r.code).toBe(0);
        expect(JSON.parse(r.out)).toEqual({ private: [join(dir, 'a', 'b', 'ca.json')], public: [join(dir, 'a', 'b', 'ca.pub.json')] });
        expect(readFileSync(join(dir, 'a', 'b', 'ca.pub.json'), 'utf8')).toContain('{');
        writeFileSync(join(dir, 'p.yaml'), 'not: [valid');
        const c = await run(['policy', 'check', '--json', join(dir, 'p.yaml')]);
        expect(c.code).toBe(1);
        expect(JSON.parse(c.out)).toMatchObject({ ok: false });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('daemon arguments (its table)', () => {
  it('validates before touching the system', () => {
    expect(() => parseDaemonArgs([])).toThrow(/no trust configured/);
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--ca', 'y'])).toThrow(/choose one trust mode/);
    expect(() => parseDaemonArgs(['--ca', 'y'])).toThrow(/needs all of --ca, --cert and --key/);
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--queues', 'two'])).toThrow('--queues must be an integer, got "two"');
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--reject', 'rest'])).toThrow(/did you mean reset/);
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--remove-rules-on-sotp'])).toThrow(/did you mean --remove-rules-on-stop/);
    expect(parseDaemonArgs(['--help'])).toBe('help');
  });

  it('checks ranges (validateConfig) as usage errors, before the system is touched', () => {
    const usage = (argv: string[]): TesseraError => {
      try {
        parseDaemonArgs(['--psk-file', 'x', ...argv]);
      } catch (err) {
        return err as TesseraError;
      }
      throw new Error('no error');
    };
    expect([usage(['--queues', '99']).code, usage(['--queues', '99']).message]).toEqual(['TESSERA_ERR_INVALID_ARGUMENT', '--queues must be 1..16, got 99']);
    expect(usage(['--token-ttl', '10s']).message).toMatch(/--token-ttl must be 60..86400 seconds/);
    expect(usage(['--cgroup-root', '../x']).message).toMatch(/--cgroup-root must be a simple directory name/);
    expect(usage(['--docker', 'relative.sock']).message).toMatch(/absolute path/);
  });

  it('builds the config with defaults, durations, the optional --docker socket and --metrics-listen', () => {
    const cfg = parseDaemonArgs(['--psk-file', 'x', '--queues', '2', '--fail-open', '--token-ttl', '10m', '--host-id', 'h1'], {});
    expect(cfg).toMatchObject({ queues: 2, failOpen: true, trust: { mode: 'psk', pskFile: 'x' }, tokenTtlSeconds: 600, clockSkewSeconds: 30, socket: '/run/tessera/tessera.sock', hostId: 'h1' });
    expect(cfg).not.toHaveProperty('docker');
    expect(cfg).not.toHaveProperty('metricsListen');
    expect(parseDaemonArgs(['--psk-file', 'x', '--docker'])).toMatchObject({ docker: { socket: '/var/run/docker.sock' } });
    expect(parseDaemonArgs(['--docker', '/d.sock', '--psk-file', 'x'])).toMatchObject({ docker: { socket: '/d.sock' } });
    expect(parseDaemonArgs(['--psk-file', 'x', '--metrics-listen', '9464'])).toMatchObject({ metricsListen: { host: '127.0.0.1', port: 9464 } });
    expect(parseDaemonArgs(['--psk-file', 'x'])).toMatchObject({ udpRefusal: 'drop' });
    expect(parseDaemonArgs(['--psk-file', 'x', '--udp-refusal', 'icmp'])).toMatchObject({ udpRefusal: 'icmp' });
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--udp-refusal', 'reset'])).toThrow(/--udp-refusal/);
    expect(parseDaemonArgs(['--psk-file', 'x'], { TESSERA_SOCKET: '/s.sock' })).toMatchObject({ socket: '/s.sock' });
    expect(parseDaemonArgs(['--psk-file', 'x', '--state-dir', '/a', '--state-dir', '/b'])).toMatchObject({ stateDir: '/b' }); // appended flags override
  });

  it('daemon and cleanup usage errors go through the runner: status 2, before any privilege check', async () => {
    const d = await run(['daemon', '--psk-file', 'x', '--queus', '2']);
    expect(d.code).toBe(2);
    expect(d.errLines[0]).toBe('tessera daemon: unknown option --queus (did you mean --queues?) [TESSERA_ERR_INVALID_ARGUMENT]');
    const c = await run(['cleanup', '--forse']);
    expect(c.code).toBe(2);
    expect(c.errLines[0]).toMatch(/did you mean --force/);
  });
});
