// The installable package, as an operator gets it: `npm pack` of a clean copy of this checkout
// (its prepack builds the JS), `npm install -g` of the tarball into a temporary prefix (its
// install script builds the addon with npm's own node-gyp), then the installed `tessera`.
// And the systemd unit, checked by systemd-analyze. Root: the install builds native code and
// the unit check reads the system's unit search path; nothing outside the temp dirs is written.
//
// Every step is bounded by its own timeout (the install fetches dependencies; --prefer-offline
// takes them from npm's cache when they are there).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isRoot } from '../../scripts/lib/netns.js';
import { REPO } from '../../scripts/lib/cluster.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'package install (needs root)', 'integration tests need root: run as root');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Ran {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeoutMs, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? `\n${r.error.message}` : '') };
}

const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

describe.runIf(isRoot)('the npm package and the systemd unit', () => {
  let dir = '';
  let tarball = '';
  let bin = '';
  let listing: string[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-pkg-'));
    // A clean copy of the tracked files (as a fresh clone has them): no dist/, no native build.
    const src = join(dir, 'src');
    const tracked = existsSync(join(REPO, '.git'))
      ? execFileSync('git', ['-C', REPO, 'ls-files', '-z'], { encoding: 'utf8' }).split('\0').filter(Boolean)
      : readdirSync(REPO).filter((f) => !['node_modules', 'dist', '.git'].includes(f));
    for (const f of tracked) {
      if (!existsSync(join(REPO, f))) continue; // deleted in the work tree, not yet committed
      mkdirSync(dirname(join(src, f)), { recursive: true });
      cpSync(join(REPO, f), join(src, f), { recursive: true });
    }
    rmSync(join(src, 'native', 'build'), { recursive: true, force: true });
    symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'));

    const pack = sh('npm', ['pack', '--pack-destination', dir], { cwd: src, timeoutMs: 180_000 });
    expect(pack.code, pack.stderr).toBe(0);
    tarball = join(dir, `tessera-${version}.tgz`);
    expect(existsSync(tarball), pack.stdout).toBe(true);
    listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);

    const prefix = join(dir, 'prefix');
    const install = sh('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir, timeoutMs: 420_000 });
    expect(install.code, install.stderr).toBe(0);
    bin = join(prefix, 'bin', 'tessera');
  }, 660_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('packs the compiled JS, the addon sources and the packaging, and no tests, build output or dependencies', () => {
    for (const f of ['dist/src/bin/tessera.js', 'dist/src/datapath/queue.worker.js', 'native/binding.gyp', 'native/src/queue.c', 'native/index.cjs', 'packaging/tessera.cjs', 'packaging/tessera.service', 'packaging/tessera-runc', 'docs/install.md']) {
      expect(listing, f).toContain(`package/${f}`);
    }
    const stray = listing.filter((f) => /^package\/(test|node_modules|native\/build|dist\/(test|scripts|bench)|src)\//.test(f) || f.endsWith('.map'));
    expect(stray).toEqual([]);
  });

  it('installs a working tessera on PATH: --version, --help, ca init', () => {
    const env = { ...process.env, PATH: `${dirname(bin)}:${process.env.PATH ?? ''}` };
    const v = sh('tessera', ['--version'], { env, timeoutMs: 30_000 });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim()).toBe(`tessera ${version}`);
    const help = sh('tessera', ['--help'], { env, timeoutMs: 30_000 });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tessera <command>/m);
    expect(help.stdout).toMatch(/^ {2}daemon /m);
    // The addon was built at install, for this Node.js, inside the installed package.
    expect(existsSync(join(dirname(bin), '..', 'lib', 'node_modules', 'tessera', 'native', 'build', 'Release', 'tessera_nfq.node'))).toBe(true);
    const ca = join(dir, 'ca');
    const init = sh('tessera', ['ca', 'init', '--out', ca, '--name', 'pkg-test-ca'], { env, timeoutMs: 30_000 });
    expect(init.code, init.stderr).toBe(0);
    expect(existsSync(join(ca, 'ca.json')) && existsSync(join(ca, 'ca.pub.json'))).toBe(true);
  });

  it('refuses an old Node.js at preinstall with one line naming the version it needs', () => {
    const check = join(dirname(bin), '..', 'lib', 'node_modules', 'tessera', 'packaging', 'node-check.cjs');
    const old = sh(process.execPath, [check], { env: { ...process.env, TESSERA_TEST_NODE_VERSION: '18.19.0' }, timeoutMs: 30_000 });
    expect(old.code).toBe(1);
    expect(old.stderr.trim().split('\n')).toHaveLength(1);
    expect(old.stderr).toMatch(/^tessera: Node\.js 20\.12\.0 or newer is required, this is v18\.19\.0 .*\[TESSERA_ERR_PREREQ\]$/m);
    const current = sh(process.execPath, [check], { timeoutMs: 30_000 });
    expect(current).toMatchObject({ code: 0, stderr: '' });
  });

  it('packaging/tessera.service passes systemd-analyze verify and keeps the rules over a stop or restart', () => {
    const unit = join(REPO, 'packaging', 'tessera.service');
    const r = sh('systemd-analyze', ['verify', unit], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim()).toBe('');
    const text = readFileSync(unit, 'utf8');
    const directives = text.split('\n').filter((l) => /^[A-Za-z]+=/.test(l));
    // Nothing that runs on stop may remove rules; nothing may delete /run/tessera on stop.
    expect(directives.filter((l) => /^(ExecStop|ExecStopPost|ExecStartPre|RuntimeDirectory)/.test(l))).toEqual([]);
    expect(directives.filter((l) => /cleanup|remove-rules-on-stop/.test(l))).toEqual([]);
    expect(directives).toEqual(expect.arrayContaining(['ExecStart=/usr/bin/env tessera daemon --psk-file /etc/tessera/psk.json', 'KillMode=mixed', 'Restart=on-failure']));
  });
});
