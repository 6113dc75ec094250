// One table per command: from it come the parser, the value types and their validation,
// and the help text. Nothing else declares an option, so help cannot drift from what is
// parsed. Our own small parser rather than node:util parseArgs: parseArgs has no optional
// values (`--docker [SOCKET]`) and no typed values, and its errors name no near option; a
// library (commander, yargs) would keep a second declaration style next to our tables
// and write help in its own layout.

import { isIP } from 'node:net';
import { TesseraError } from '../errors.js';
import type { ListenAddress } from '../api/index.js';

export type OptionKind = 'flag' | 'string' | 'int' | 'duration' | 'time' | 'addrport' | 'enum';

export interface OptionSpec {
  /** The long name, without `--`. */
  readonly name: string;
  readonly short?: string;
  readonly kind: OptionKind;
  /** The value's placeholder in help (FILE, N); by kind when absent. */
  readonly arg?: string;
  /** The value may be left out (`--docker [SOCKET]`); then `implied` is the value. */
  readonly optional?: boolean;
  readonly implied?: string;
  readonly multiple?: boolean;
  readonly required?: boolean;
  /** int: inclusive bounds. */
  readonly min?: number;
  readonly max?: number;
  /** enum: the accepted values. */
  readonly choices?: readonly string[];
  /** duration: the unit of a bare number (default seconds). */
  readonly unit?: 's' | 'ms';
  readonly default?: string | number | boolean;
  /** Shown in help as the default when it is not a constant (e.g. "this machine's hostname"). */
  readonly defaultText?: string;
  /** Help heading the option is listed under (default "Options"). */
  readonly section?: string;
  readonly help: string;
}

export interface CommandSpec {
  /** As typed after `tessera`: "status", "ca init". */
  readonly name: string;
  /** One line for the list of commands. */
  readonly summary: string;
  /** Usage lines after "tessera "; generated from the options when absent. */
  readonly usage?: readonly string[];
  /** Paragraphs printed between usage and options, as written. */
  readonly description: string;
  readonly options: readonly OptionSpec[];
  readonly positionals?: { readonly name: string; readonly min: number; readonly max: number };
  /** Takes `-- COMMAND [ARGS...]`. */
  readonly command?: boolean;
}

/** A command made of subcommands (`tessera ca init|issue`). */
export interface GroupSpec {
  readonly name: string;
  readonly summary: string;
  readonly description: string;
  readonly subcommands: readonly CommandSpec[];
}

type Opts<C extends CommandSpec> = C['options'][number];
type Scalar<O> = O extends { kind: 'flag' } ? boolean : O extends { kind: 'int' | 'duration' | 'time' } ? number : O extends { kind: 'addrport' } ? ListenAddress : string;
type Val<O> = O extends { multiple: true } ? Scalar<O>[] : Scalar<O>;
type Always<O> = O extends { kind: 'flag' } | { multiple: true } | { default: unknown } | { required: true } ? true : false;
/** The parsed values of a command: typed by its table; flags, lists and defaulted options always present. */
export type Values<C extends CommandSpec> = { [O in Opts<C> as Always<O> extends true ? O['name'] : never]: Val<O> } & {
  [O in Opts<C> as Always<O> extends true ? never : O['name']]?: Val<O>;
};

export interface Parsed<C extends CommandSpec> {
  values: Values<C>;
  positionals: string[];
  /** After `--` (commands that take one). */
  command: string[];
}

/** A usage error: exit status 2, with a pointer to the command's help. */
export function usageError(command: string, message: string): TesseraError {
  const e = new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', message);
  (e as TesseraError & { helpFor?: string }).helpFor = command;
  return e;
}

/** The command whose --help a usage error points at, if any. */
export function helpFor(err: TesseraError): string | undefined {
  return (err as TesseraError & { helpFor?: string }).helpFor;
}

/** Edit distance with adjacent transpositions (optimal string alignment), for did-you-mean. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate closest to `input`, when it is close enough to be a likely typo or prefix. */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(input) && input.length >= 2 ? 0.5 : distance(input, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(1, Math.floor((best?.length ?? 0) / 3)) ? best : undefined;
}

export function suggest(input: string, candidates: readonly string[], prefix = ''): string {
  const s = didYouMean(input, candidates);
  return s === undefined ? '' : ` (did you mean ${prefix}${s}?)`;
}

const DURATION = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "5m", "1h30m", "250ms"; a bare number is in `unit` (default seconds). Milliseconds. */
export function parseDuration(text: string, unit: 's' | 'ms' = 's'): number | undefined {
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text) * UNIT_MS[unit]!;
  if (!DURATION.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return ms;
}

/** "ADDR:PORT", "[v6]:PORT", ":PORT" or "PORT" (loopback, 127.0.0.1); ADDR an IP address. */
export function parseAddrPort(text: string): ListenAddress | undefined {
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  const at = text.lastIndexOf(':');
  const [addr, portText] = v6 ? [v6[1]!, v6[2]!] : at < 0 ? ['', text] : [text.slice(0, at), text.slice(at + 1)];
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65_535) return undefined;
  if (v6) return isIP(addr) === 6 ? { host: addr, port } : undefined;
  const host = addr || '127.0.0.1';
  return isIP(host) === 4 ? { host, port } : undefined;
}

export function placeholder(o: OptionSpec): string {
  if (o.kind === 'flag') return '';
  const a = o.arg ?? (o.choices ? o.choices.join('|') : { int: 'N', duration: 'DURATION', time: 'TIME', addrport: 'ADDR:PORT', string: 'VALUE', enum: 'VALUE' }[o.kind]);
  return o.optional ? `[${a}]` : a;
}

function convert(command: string, o: OptionSpec, raw: string, now: number): string | number | ListenAddress {
  const flag = `--${o.name}`;
  const bad = (what: string): never => {
    throw usageError(command, `${flag} must be ${what}, got "${raw}"`);
  };
  switch (o.kind) {
    case 'int': {
      const range = o.min !== undefined && o.max !== undefined ? ` ${o.min}..${o.max}` : '';
      if (!/^-?\d+$/.test(raw)) bad(`an integer${range}`);
      const n = Number(raw);
      if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) bad(`an integer${range}`);
      return n;
    }
    case 'duration': {
      const ms = parseDuration(raw, o.unit);
      return ms === undefined ? bad('a duration like 90s, 5m or 1h30m') : ms;
    }
    case 'time': {
      const ms = parseDuration(raw, o.unit);
      if (ms !== undefined) return now - ms;
      const t = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : NaN;
      return Number.isNaN(t) ? bad('a duration before now (5m, 1h) or an ISO time (2026-01-02T03:04:05Z)') : t;
    }
    case 'addrport':
      return parseAddrPort(raw) ?? bad('ADDR:PORT (127.0.0.1:9464, [::1]:9464) or a port alone for loopback');
    case 'enum':
      if (!o.choices!.includes(raw)) throw usageError(command, `${flag} must be one of ${o.choices!.join(', ')}, got "${raw}"${suggest(raw, o.choices!)}`);
      return raw;
    default:
      if (raw === '') bad('a non-empty value');
      return raw;
  }
}

/** Parse `argv` (after the command's words) by its table. 'help' when -h/--help is given. */
export function parseCommand<C extends CommandSpec>(spec: C, argv: readonly string[], opts: { now?: number } = {}): Parsed<C> | 'help' {
  const now = opts.now ?? Date.now();
  const byLong = new Map(spec.options.map((o) => [o.name, o]));
  const byShort = new Map(spec.options.filter((o) => o.short).map((o) => [o.short!, o]));
  const values: Record<string, unknown> = {};
  const positionals: string[] = [];
  let command: string[] = [];
  const fail = (m: string): never => {
    throw usageError(spec.name, m);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (spec.command) command = argv.slice(i + 1);
      else if (spec.positionals) positionals.push(...argv.slice(i + 1));
      else fail(`takes no arguments after --`);
      break;
    }
    let o: OptionSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (eq >= 0) inline = a.slice(eq + 1);
      if (name === 'help') return 'help';
      o = byLong.get(name) ?? fail(`unknown option --${name}${suggest(name, [...byLong.keys(), 'help'], '--')}`);
    } else if (a.startsWith('-') && a.length > 1) {
      if (a === '-h') return 'help';
      o = byShort.get(a[1]!) ?? fail(`unknown option ${a.slice(0, 2)}`);
      if (a.length > 2) inline = a.slice(a[2] === '=' ? 3 : 2);
    } else {
      if (!spec.positionals) fail(`unexpected argument "${a}"${spec.command ? ' (put the command after --)' : ''}`);
      positionals.push(a);
      continue;
    }
    const flag = `--${o.name}`;
    let raw: string;
    if (o.kind === 'flag') {
      if (inline !== undefined) fail(`${flag} takes no value`);
      values[o.name] = true;
      continue;
    } else if (inline !== undefined) raw = inline;
    else {
      const next = argv[i + 1];
      const isValue = next !== undefined && !(next.startsWith('-') && next.length > 1);
      if (isValue) {
        raw = next;
        i++;
      } else if (o.optional) raw = o.implied ?? '';
      else fail(`${flag} needs a value (${placeholder(o)})${next?.startsWith('-') ? `; write ${flag}=${next} for a value starting with "-"` : ''}`);
    }
    const v = convert(spec.name, o, raw!, now);
    // Given again, a single-valued option takes the last value (as node:util parseArgs and
    // GNU tools do), so a wrapper can append flags that override a unit file's.
    if (o.multiple) ((values[o.name] ??= []) as unknown[]).push(v);
    else values[o.name] = v;
  }
  for (const o of spec.options) {
    if (o.name in values) continue;
    if (o.required) fail(`--${o.name} is required`);
    if (o.kind === 'flag') values[o.name] = false;
    else if (o.multiple) values[o.name] = [];
    // A default written as text ("600s") is typed like a given value.
    else if (o.default !== undefined) values[o.name] = typeof o.default === 'string' ? convert(spec.name, o, o.default, now) : o.default;
  }
  const p = spec.positionals;
  if (p && (positionals.length < p.min || positionals.length > p.max)) fail(`takes ${p.min === p.max ? p.min : `${p.min} to ${p.max}`} ${p.name} argument${p.max > 1 ? 's' : ''}, got ${positionals.length}`);
  if (spec.command && command.length === 0) fail('needs a command after --');
  return { values: values as Values<C>, positionals, command };
}

// ---- help ----

const WIDTH = 92;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** "-l, --label KEY=VALUE" */
export function optionLabel(o: OptionSpec): string {
  const p = placeholder(o);
  return `${o.short ? `-${o.short}, ` : ''}--${o.name}${p ? ` ${p}` : ''}`;
}

/** " (required; 1..10000; default: 50; repeatable)" */
function notes(o: OptionSpec): string {
  const d = o.defaultText ?? (o.default === undefined || o.kind === 'flag' ? undefined : String(o.default));
  const range = o.min !== undefined && o.max !== undefined ? `${o.min}..${o.max}` : undefined;
  const n = [o.required && 'required', range, d !== undefined && `default: ${d}`, o.multiple && 'repeatable'].filter(Boolean);
  return n.length ? ` (${n.join('; ')})` : '';
}

const HELP_OPTION: OptionSpec = { name: 'help', short: 'h', kind: 'flag', help: 'show this help' };

/** The option sections of a command's help, in the table's order; --help last. */
function optionSections(options: readonly OptionSpec[], heading?: string): string[] {
  const all = [...options, HELP_OPTION];
  const col = Math.min(24, Math.max(...all.map((o) => optionLabel(o).length)) + 2);
  const sections = new Map<string, string[]>();
  for (const o of all) {
    const title = heading ?? o.section ?? 'Options';
    const label = optionLabel(o);
    const text = wrap(o.help + notes(o), WIDTH - col - 2);
    const lines = label.length + 1 > col ? [`  ${label}`, ...text.map((t) => `  ${' '.repeat(col)}${t}`)] : text.map((t, i) => `  ${(i === 0 ? label : '').padEnd(col)}${t}`);
    if (!sections.has(title)) sections.set(title, []);
    sections.get(title)!.push(...lines);
  }
  return [...sections].map(([title, lines]) => `${title}:\n${lines.join('\n')}`);
}

/** "status [--json] [--socket PATH]", or "[options]" when there are many. */
export function usageLine(spec: CommandSpec): string {
  const words = [spec.name];
  const required = spec.options.filter((o) => o.required);
  const optional = spec.options.filter((o) => !o.required);
  for (const o of required) words.push(`--${o.name} ${placeholder(o)}`);
  if (optional.length > 4) words.push('[options]');
  else for (const o of optional) words.push(`[--${o.name}${placeholder(o) ? ` ${placeholder(o)}` : ''}]`);
  if (spec.positionals) words.push(spec.positionals.min > 0 ? spec.positionals.name : `[${spec.positionals.name}]`);
  if (spec.command) words.push('-- COMMAND [ARGS...]');
  return `tessera ${words.join(' ')}`;
}

function usageBlock(lines: string[]): string {
  return lines.length === 1 ? `Usage: ${lines[0]}` : `Usage:\n${lines.map((l) => `  ${l}`).join('\n')}`;
}

export function commandHelp(spec: CommandSpec): string {
  const usage = spec.usage ? spec.usage.map((u) => `tessera ${u}`) : [usageLine(spec)];
  return [usageBlock(usage), spec.description, ...optionSections(spec.options)].filter(Boolean).join('\n\n');
}

export function groupHelp(g: GroupSpec): string {
  const usage = g.subcommands.flatMap((s) => (s.usage ? s.usage.map((u) => `tessera ${u}`) : [usageLine(s)]));
  const sections = g.subcommands.map((s) => optionSections(s.options, `Options of ${s.name}`).join('\n\n'));
  return [usageBlock(usage), g.description, ...sections].filter(Boolean).join('\n\n');
}

/** The main help: every command with its summary. */
export function mainHelp(intro: string, commands: readonly { name: string; summary: string }[], outro: string): string {
  const col = Math.max(...commands.map((c) => c.name.length)) + 3;
  const lines = commands.flatMap((c) => wrap(c.summary, WIDTH - col - 2).map((t, i) => `  ${(i === 0 ? c.name : '').padEnd(col)}${t}`));
  return `${intro}\n\nCommands:\n${lines.join('\n')}\n\n${outro}`;
}
