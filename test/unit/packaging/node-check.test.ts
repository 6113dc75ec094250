// The Node.js version check run by npm's preinstall and by the installed `tessera` command
// (packaging/node-check.cjs, packaging/tessera.cjs).

import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { nodeProblem, MIN } = require('../../../packaging/node-check.cjs') as { nodeProblem: (v: string) => string | null; MIN: string };
const pkg = require('../../../package.json') as { engines: { node: string } };
const LAUNCHER = new URL('../../../packaging/tessera.cjs', import.meta.url).pathname;

describe('nodeProblem', () => {
  it('accepts 20.12 and every later version', () => {
    for (const v of ['20.12.0', 'v20.12.0', '20.12.1', '20.20.2', '21.0.0', '22.1.0', '24.0.0']) expect(nodeProblem(v), v).toBeNull();
  });

  it('refuses older ones in one line naming both versions and the error code', () => {
    for (const [v, shown] of [['18.19.0', 'v18.19.0'], ['v20.11.1', 'v20.11.1'], ['12.22.12', 'v12.22.12'], ['20.9', 'v20.9']]) {
      const p = nodeProblem(v!);
      expect(p, v).toMatch(new RegExp(`^Node\\.js 20\\.12\\.0 or newer is required, this is ${shown!.replace(/\./g, '\\.')} \\(.+\\)\\..*\\[TESSERA_ERR_PREREQ\\]$`));
      expect(p).not.toContain('\n');
    }
  });

  it('is the same minimum as package.json engines', () => {
    expect(pkg.engines.node).toBe(`>=${MIN.replace(/\.0$/, '')}`);
  });
});

describe('packaging/tessera.cjs (the installed command)', () => {
  it('runs the CLI', () => {
    const r = spawnSync(process.execPath, [LAUNCHER, '--version'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^tessera \d+\.\d+\.\d+/);
    expect(r.status).toBe(0);
  });

  it('says in one line that an installation without its compiled code is incomplete', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-launcher-'));
    try {
      mkdirSync(join(dir, 'packaging'));
      for (const f of ['tessera.cjs', 'node-check.cjs']) copyFileSync(new URL(`../../../packaging/${f}`, import.meta.url), join(dir, 'packaging', f));
      const r = spawnSync(process.execPath, [join(dir, 'packaging', 'tessera.cjs'), '--help'], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^tessera: this installation has no .*dist\/src\/bin\/tessera\.js: reinstall the package/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
