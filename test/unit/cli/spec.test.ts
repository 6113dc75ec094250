// The table is the only declaration of an option: the parser, the value types and the help
// are generated from it. These tests check the generation on a table made for the test and,
// structurally, on every real command: each option of a table is in its help, and each
// option the help names is in the table.

import { describe, expect, it } from 'vitest';
import { COMMANDS as CLIENT } from '../../../src/cli/commands.js';
import { isGroup } from '../../../src/cli/common.js';
import { mainHelpText } from '../../../src/cli/main.js';
import { commandHelp, didYouMean, groupHelp, optionLabel, parseAddrPort, parseCommand, parseDuration, type CommandSpec, type GroupSpec, type OptionSpec } from '../../../src/cli/spec.js';
import { PRIVILEGED, daemonSpec } from '../../../src/bin/daemon.js';
import { TesseraError } from '../../../src/errors.js';

const spec = {
  name: 'demo',
  summary: 'a demo',
  description: 'Does nothing.',
  options: [
    { name: 'count', short: 'c', kind: 'int', min: 1, max: 9, default: 3, help: 'how many' },
    { name: 'wait', kind: 'duration', help: 'how long' },
    { name: 'since', kind: 'time', help: 'from when' },
    { name: 'listen', kind: 'addrport', help: 'where' },
    { name: 'mode', kind: 'enum', choices: ['fast', 'slow'], default: 'fast', help: 'how' },
    { name: 'engine', kind: 'string', arg: 'SOCKET', optional: true, implied: '/run/e.sock', help: 'engine' },
    { name: 'tag', short: 't', kind: 'string', multiple: true, help: 'a tag' },
    { name: 'out', kind: 'string', arg: 'DIR', required: true, help: 'output' },
    { name: 'verbose', kind: 'flag', help: 'say more' },
  ],
} as const satisfies CommandSpec;

function usage(argv: string[]): TesseraError {
  try {
    parseCommand(spec, argv);
  } catch (err) {
    return err as TesseraError;
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

describe('parser generated from a table', () => {
  it('types values, fills defaults, flags and lists', () => {
    const p = parseCommand(spec, ['--out', 'd', '-c', '5', '--wait', '1m30s', '-t', 'a', '--tag=b', '--verbose', '--listen', '[::1]:9464'], { now: 1_000_000 });
    expect(p).not.toBe('help');
    if (p === 'help') return;
    expect(p.values).toEqual({ out: 'd', count: 5, wait: 90_000, tag: ['a', 'b'], verbose: true, listen: { host: '::1', port: 9464 }, mode: 'fast' });
    const q = parseCommand(spec, ['--out', 'd']);
    if (q === 'help') throw new Error('help');
    expect(q.values).toEqual({ out: 'd', count: 3, mode: 'fast', tag: [], verbose: false });
  });

  it('takes an optional value only when one follows', () => {
    const bare = parseCommand(spec, ['--engine', '--out', 'd']);
    const given = parseCommand(spec, ['--engine', '/x.sock', '--out', 'd']);
    const inline = parseCommand(spec, ['--out', 'd', '--engine=/y.sock']);
    expect(bare !== 'help' && bare.values.engine).toBe('/run/e.sock');
    expect(given !== 'help' && given.values.engine).toBe('/x.sock');
    expect(inline !== 'help' && inline.values.engine).toBe('/y.sock');
  });

  it('answers -h and --help anywhere with help', () => {
    expect(parseCommand(spec, ['--count', '2', '-h'])).toBe('help');
    expect(parseCommand(spec, ['--help'])).toBe('help');
  });

  it('--since is a duration before now or an ISO time', () => {
    const ago = parseCommand(spec, ['--out', 'd', '--since', '5m'], { now: 10_000_000 });
    const iso = parseCommand(spec, ['--out', 'd', '--since', '2026-01-02T03:04:05Z']);
    expect(ago !== 'help' && ago.values.since).toBe(10_000_000 - 300_000);
    expect(iso !== 'help' && iso.values.since).toBe(Date.UTC(2026, 0, 2, 3, 4, 5));
  });

  it('refuses bad values with the option, the expected form and what was given', () => {
    expect(usage(['--out', 'd', '--count', 'two']).message).toBe('--count must be an integer 1..9, got "two"');
    expect(usage(['--out', 'd', '--count', '10']).message).toMatch(/1\.\.9/);
    expect(usage(['--out', 'd', '--wait', '5 minutes']).message).toMatch(/--wait must be a duration/);
    expect(usage(['--out', 'd', '--since', 'yesterday']).message).toMatch(/--since must be/);
    expect(usage(['--out', 'd', '--listen', '1.2.3:80']).message).toMatch(/--listen must be ADDR:PORT/);
    expect(usage(['--out', 'd', '--mode', 'fats']).message).toBe('--mode must be one of fast, slow, got "fats" (did you mean fast?)');
    expect(usage(['--out', 'd', '--count']).message).toBe('--count needs a value (N)');
    expect(usage(['--out', 'd', '--count', '--verbose']).message).toMatch(/needs a value/);
    expect(usage(['--out', 'd', '--verbose=yes']).message).toBe('--verbose takes no value');
    const twice = parseCommand(spec, ['--out', 'd', '--count', '1', '--count', '2', '--out', 'e']);
    expect(twice !== 'help' && [twice.values.count, twice.values.out]).toEqual([2, 'e']); // the last one wins
    expect(usage([]).message).toBe('--out is required');
    expect(usage(['--out', 'd', 'stray']).message).toBe('unexpected argument "stray"');
  });

  it('names the nearest option for an unknown one (did-you-mean), and exit status 2', () => {
    const e = usage(['--out', 'd', '--verbsoe']);
    expect(e.message).toBe('unknown option --verbsoe (did you mean --verbose?)');
    expect(e.code).toBe('TESSERA_ERR_INVALID_ARGUMENT');
    expect(usage(['--out', 'd', '--zzzzzz']).message).toBe('unknown option --zzzzzz');
    expect(usage(['--out', 'd', '-x']).message).toBe('unknown option -x');
  });

  it('did-you-mean: typos, transpositions and prefixes; nothing far away', () => {
    expect(didYouMean('stauts', ['status', 'flows'])).toBe('status');
    expect(didYouMean('flow', ['status', 'flows'])).toBe('flows');
    expect(didYouMean('inti', ['init', 'issue'])).toBe('init');
    expect(didYouMean('banana', ['status', 'flows'])).toBeUndefined();
  });

  it('parses durations and ADDR:PORT', () => {
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('250', 'ms')).toBe(250);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('5 m')).toBeUndefined();
    expect(parseAddrPort('9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseAddrPort(':9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseAddrPort('0.0.0.0:9464')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseAddrPort('[::]:9464')).toEqual({ host: '::', port: 9464 });
    expect(parseAddrPort('::1:9464')).toBeUndefined(); // an IPv6 address needs brackets
    expect(parseAddrPort('127.0.0.1:0')).toBeUndefined();
    expect(parseAddrPort('127.0.0.1:70000')).toBeUndefined();
    expect(parseAddrPort('localhost:80')).toBeUndefined();
  });
});

/** Every command, the privileged ones (tables in src/bin/daemon.ts) included. */
const COMMANDS: readonly (CommandSpec | GroupSpec)[] = [...CLIENT, ...PRIVILEGED.map((c) => c.spec)];
const helpText = (name: string): string | undefined => {
  const c = COMMANDS.find((x) => x.name === name);
  return c && (isGroup(c) ? groupHelp(c) : commandHelp(c));
};

/** Each command's (or subcommand's) table with the help text generated for it. */
const tables: { name: string; options: readonly OptionSpec[]; help: string }[] = COMMANDS.flatMap((c) =>
  isGroup(c) ? c.subcommands.map((s) => ({ name: s.name, options: s.options, help: helpText(c.name)! })) : [{ name: c.name, options: c.options, help: helpText(c.name)! }],
);

const anyTable = new Set(tables.flatMap((t) => t.options.map((o) => o.name)));

/** The option entries of a help text: lines "  [-x, ]--name [ARG]" in its option sections. */
function helpEntries(help: string): string[] {
  return help
    .split('\n')
    .filter((l) => /^ {2}(-[A-Za-z], )?--[a-z][a-z-]*/.test(l))
    .map((l) => /--([a-z][a-z-]*)/.exec(l)![1]!);
}

describe('help generated from every real table', () => {
  it('lists every option of every table, with its value placeholder', () => {
    expect(tables.length).toBeGreaterThanOrEqual(11);
    for (const t of tables) {
      for (const o of t.options) expect(t.help.split('\n').some((l) => l.startsWith(`  ${optionLabel(o)}`)), `${t.name} --${o.name}`).toBe(true);
    }
  });

  it('lists no option that is not in the table, and names no option a command does not have', () => {
    for (const c of COMMANDS) {
      const own = new Set(['help', ...(isGroup(c) ? c.subcommands.flatMap((s) => s.options) : c.options).map((o) => o.name)]);
      const help = helpText(c.name)!;
      expect(helpEntries(help).filter((n) => !own.has(n)), c.name).toEqual([]);
      // Any "--name" anywhere in the text (usage, descriptions) is an option of some table
      // (descriptions may point at another command's option, e.g. the daemon's --psk-file).
      const mentioned = [...help.matchAll(/(?<![\w-])--([a-z][a-z-]*)/g)].map((m) => m[1]!);
      expect(mentioned.filter((n) => !own.has(n) && !anyTable.has(n)), c.name).toEqual([]);
    }
  });

  it('has each option entry once per table', () => {
    for (const c of COMMANDS) {
      if (isGroup(c)) continue;
      const entries = helpEntries(helpText(c.name)!);
      expect(entries.length, c.name).toBe(c.options.length + 1);
    }
  });

  it('the daemon table holds what the operator needs, --metrics-listen and the optional --docker value included', () => {
    const names = daemonSpec.options.map((o) => o.name);
    expect(names).toEqual(expect.arrayContaining(['psk-file', 'ca', 'cert', 'key', 'docker', 'metrics-listen', 'remove-rules-on-stop', 'log-level']));
    expect(helpText('daemon')).toContain('  --docker [SOCKET]');
    expect(helpText('cleanup')).toContain('  --force');
  });

  it('the main help lists every command with its summary', () => {
    for (const c of COMMANDS) expect(mainHelpText(PRIVILEGED)).toMatch(new RegExp(`^  ${c.name} +${c.summary.slice(0, 20).replace(/[()]/g, '.')}`, 'm'));
  });

  it('wraps help to 92 columns', () => {
    for (const c of COMMANDS) for (const l of helpText(c.name)!.split('\n')) expect(l.length, `${c.name}: ${l}`).toBeLessThanOrEqual(100);
  });
});

describe('defaults of every real table', () => {
  const sample: Record<string, string> = { int: '1', duration: '60s', time: '5m', addrport: '9464', string: 'x', enum: '' };
  it('are typed like given values (a duration default is a number of ms, not "600s")', () => {
    for (const t of tables) {
      const argv = t.options.filter((o) => o.required).flatMap((o) => [`--${o.name}`, o.kind === 'enum' ? o.choices![0]! : sample[o.kind]!]);
      const spec = { name: t.name, summary: '', description: '', options: t.options, positionals: { name: 'X', min: 0, max: 1 }, command: false } satisfies CommandSpec;
      const p = parseCommand(spec, argv);
      if (p === 'help') throw new Error('help');
      const values = p.values as Record<string, unknown>;
      for (const o of t.options) {
        if (o.default === undefined) continue;
        const want = o.kind === 'flag' ? 'boolean' : ['int', 'duration', 'time'].includes(o.kind) ? 'number' : 'string';
        expect(typeof values[o.name], `${t.name} --${o.name}`).toBe(want);
      }
    }
  });
});
