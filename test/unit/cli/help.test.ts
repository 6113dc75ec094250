// --help tells the truth: every option a command parses is in its help text, and bad usage
// gets exit status 2 and a pointer to --help.

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HELP } from '../../../src/cli/help.js';
import { runCli } from '../../../src/cli/main.js';
import { parseDaemonArgs } from '../../../src/daemon/index.js';

const root = join(import.meta.dirname, '..', '..', '..');

/** Option names declared in a parseArgs/parse options object literal of a source file. */
function declaredOptions(file: string): string[] {
  const src = readFileSync(join(root, file), 'utf8');
  return [...src.matchAll(/'?([a-z][a-z-]*)'?: \{ type: '(?:string|boolean)'/g)].map((m) => m[1]!).filter((n) => n !== 'help');
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

describe('help texts', () => {
  it('documents every daemon and cleanup option (both parsed in src/daemon/index.ts)', () => {
    const opts = declaredOptions('src/daemon/index.ts');
    expect(opts.length).toBeGreaterThan(10);
    expect(opts.filter((o) => !HELP.daemon!.includes(`--${o}`) && !HELP.cleanup!.includes(`--${o}`))).toEqual([]);
    expect(HELP.cleanup).toContain('--force');
    expect(HELP.daemon).toContain('--remove-rules-on-stop');
  });

  it('documents every option of run, status, flows, ca, psk', () => {
    const main = declaredOptions('src/cli/main.ts');
    const keys = declaredOptions('src/cli/keys.ts');
    const policy = declaredOptions('src/cli/policy.ts');
    const all = [...main, ...keys, ...policy];
    const documented = (o: string) => ['run', 'status', 'flows', 'ca', 'psk', 'policy'].some((c) => HELP[c]!.includes(`--${o}`));
    expect(all.length).toBeGreaterThan(8);
    expect(all.filter((o) => !documented(o))).toEqual([]);
  });

  it('lists every command in the main help', () => {
    for (const c of ['daemon', 'run', 'status', 'flows', 'cleanup', 'policy', 'ca', 'psk', 'version']) expect(HELP.main).toContain(`  ${c} `);
  });

  it('answers unknown options and commands with status 2 and a pointer to --help', async () => {
    const c = capture();
    expect(await runCli(['status', '--bogus'], c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/bogus[\s\S]*tessera status --help[\s\S]*TESSERA_ERR_INVALID_ARGUMENT/);
    const d = capture();
    expect(await runCli(['frobnicate'], d.io)).toBe(2);
    expect(d.err.join('\n')).toContain('unknown command');
  });

  it('refuses tessera run without labels or without a command', async () => {
    const c = capture();
    expect(await runCli(['run', '--', 'true'], c.io)).toBe(2);
    expect(c.err.join()).toMatch(/at least one --label/);
    const d = capture();
    expect(await runCli(['run', '--label', 'app=x'], d.io)).toBe(2);
    expect(d.err.join()).toMatch(/needs a command/);
    const e = capture();
    expect(await runCli(['run', '--label', '@sys:x=y', '--', 'true'], e.io)).toBe(1);
    expect(e.err.join()).toMatch(/reserved/);
  });

  it('validates daemon arguments before touching the system', () => {
    expect(() => parseDaemonArgs([])).toThrow(/no trust configured/);
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--ca', 'y'])).toThrow(/choose one trust mode/);
    expect(() => parseDaemonArgs(['--ca', 'y'])).toThrow(/needs all of --ca, --cert and --key/);
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--queues', 'two'])).toThrow(/--queues must be an integer/);
    expect(parseDaemonArgs(['--help'])).toBe('help');
    const cfg = parseDaemonArgs(['--psk-file', 'x', '--queues', '2', '--fail-open']);
    expect(cfg).toMatchObject({ queues: 2, failOpen: true, trust: { mode: 'psk', pskFile: 'x' } });
  });
});
