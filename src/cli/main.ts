// The `tessera` command line for everything except `daemon` and `cleanup` (those run the
// privileged machinery and live in src/daemon, dispatched by src/bin). It talks to the daemon
// through the local API only. Functions return an exit code; src/bin sets it.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { spawn } from 'node:child_process';
import { createApiClient, type FlowEntry, type PuInfo } from '../api/index.js';
import { TesseraError } from '../errors.js';
import { HELP } from './help.js';
import { caCommand, pskCommand } from './keys.js';
import { policyCommand } from './policy.js';
import { parseUserLabel } from '../identity/index.js';

export const DEFAULT_SOCKET = '/run/tessera/tessera.sock';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const stdio: CliIo = { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') };

/** parseArgs with our error code and a pointer to --help. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${(err as Error).message.replace(/\. To specify.*$/s, '')}\nSee: tessera ${command} --help`);
  }
}

export function socketPath(flag: string | undefined): string {
  return flag ?? process.env.TESSERA_SOCKET ?? DEFAULT_SOCKET;
}

function formatLabels(labels: readonly string[] | null): string {
  return labels && labels.length ? labels.join(',') : '-';
}

export function formatFlow(f: FlowEntry): string {
  const who = f.remotePu ? `${f.remoteHost}/${f.remotePu} [${formatLabels(f.remoteLabels)}]` : 'unprotected peer';
  const arrow = f.direction === 'ingress' ? '<-' : '->';
  return `${f.time} ${f.verdict.toUpperCase().padEnd(6)} ${f.reason.padEnd(16)} ${f.localPu ?? '-'} [${formatLabels(f.localLabels)}]:${f.localPort} ${arrow} ${f.remoteAddr}:${f.remotePort} ${who} rule=${f.ruleId}`;
}

function formatPu(p: PuInfo): string {
  const lines = [
    `${p.id}  ${p.kind}  ${p.name}`,
    `  labels:  ${formatLabels(p.labels)}`,
    `  classid: ${p.classid}  pids: ${p.pids.join(',') || '-'}  listening: ${p.ports.join(',') || '-'}`,
  ];
  for (const r of p.posture) lines.push(`  risk:    ${r.flag} (fix: ${r.fix})`);
  return lines.join('\n');
}

async function runCommand(args: string[], io: CliIo): Promise<number> {
  const dash = args.indexOf('--');
  const own = dash >= 0 ? args.slice(0, dash) : args;
  const command = dash >= 0 ? args.slice(dash + 1) : [];
  const { values } = parse('run', own, {
    label: { type: 'string', short: 'l', multiple: true },
    name: { type: 'string' },
    socket: { type: 'string' },
  });
  if (values.help) return help('run', io);
  if (command.length === 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'tessera run needs a command after --\nSee: tessera run --help');
  const labels = (values.label ?? []) as string[];
  if (labels.length === 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'tessera run needs at least one --label key=value\nSee: tessera run --help');
  for (const l of labels) parseUserLabel(l); // fail here, with the label's own message
  const client = createApiClient(socketPath(values.socket as string | undefined));
  await client.createPu({ labels, pid: process.pid, name: (values.name as string | undefined) ?? command.join(' ').slice(0, 128) });
  // We are now inside the PU's cgroup; the child inherits it, so its first packet is classified.
  return new Promise<number>((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    child.on('error', (err) => {
      io.err(`tessera run: cannot start ${command[0]}: ${err.message}`);
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal ? (({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }) as Record<string, number>)[signal] ?? 1 : 1));
    });
  });
}

async function statusCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse('status', args, { socket: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) return help('status', io);
  const s = await createApiClient(socketPath(values.socket as string | undefined)).status();
  if (values.json) {
    io.out(JSON.stringify(s, null, 2));
    return 0;
  }
  io.out(`host ${s.host}  trust ${s.trust}  policy ${s.policy}  queues ${s.queues.join(',')}  ${s.failOpen ? 'FAIL-OPEN' : 'fail-closed'}`);
  // A daemon of an earlier version sends no `rules`.
  if (s.rules) {
    const last = s.rules.lastFailure ? ` (last failure ${s.rules.lastFailure.at}: ${s.rules.lastFailure.error})` : '';
    io.out(s.rules.ok ? `rules: ok since ${s.rules.since}${last}` : `rules: FAILING since ${s.rules.since}: ${s.rules.error ?? 'unknown error'} (new PUs are refused; retried every 10 s)`);
  }
  io.out(Object.entries(s.counters).map(([k, v]) => `${k}=${v}`).join(' '));
  io.out(s.pus.length ? s.pus.map(formatPu).join('\n') : 'no PUs');
  return 0;
}

async function flowsCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse('flows', args, {
    socket: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    denied: { type: 'boolean' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    revoke: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
  });
  if (values.help) return help('flows', io);
  if (values.revoke) {
    const cut = await createApiClient(socketPath(values.socket as string | undefined)).revoke(!!values['dry-run']);
    for (const f of cut) {
      const line = `${f.cut ? 'CUT' : values['dry-run'] ? 'WOULD CUT' : 'GONE'} ${f.direction} ${f.localPu ?? '-'} [${f.localLabels.join(',')}]:${f.localPort} ${f.direction === 'ingress' ? '<-' : '->'} ${f.remoteAddr}:${f.remotePort} [${(f.remoteLabels ?? ['no tessera']).join(',')}] refused by ${f.ruleId}`;
      io.out(values.json ? JSON.stringify(f) : line);
    }
    if (!values.json) io.out(`${cut.length} established connection(s) refused by the current policy${values['dry-run'] ? ' (dry run: nothing cut)' : ''}`);
    return 0;
  }
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--limit must be 1..10000');
  const client = createApiClient(socketPath(values.socket as string | undefined));
  const show = (f: FlowEntry): void => io.out(values.json ? JSON.stringify(f) : formatFlow(f));
  if (values.follow) {
    const f = client.followFlows({ deniedOnly: !!values.denied }, show);
    process.once('SIGINT', () => f.stop());
    await f.done;
    return 0;
  }
  for (const f of await client.flows({ deniedOnly: !!values.denied, limit })) show(f);
  return 0;
}

function help(command: string, io: CliIo): number {
  io.out(HELP[command] ?? HELP.main!);
  return 0;
}

export async function runCli(argv: string[], io: CliIo = stdio): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        return help(rest[0] ?? 'main', io);
      case 'version':
      case '--version':
        io.out('tessera 0.1.0');
        return 0;
      case 'run':
        return await runCommand(rest, io);
      case 'status':
        return await statusCommand(rest, io);
      case 'flows':
        return await flowsCommand(rest, io);
      case 'ca':
        return await caCommand(rest, io);
      case 'psk':
        return await pskCommand(rest, io);
      case 'policy':
        return await policyCommand(rest, io);
      default:
        io.err(`tessera: unknown command "${command}"\n`);
        io.err(HELP.main!);
        return 2;
    }
  } catch (err) {
    if (err instanceof TesseraError) {
      io.err(`tessera: ${err.message} [${err.code}]`);
      return err.code === 'TESSERA_ERR_INVALID_ARGUMENT' ? 2 : 1;
    }
    throw err;
  }
}
