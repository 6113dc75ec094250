// The `tessera` runner: every command, `daemon` and `cleanup` included (src/bin passes
// them in), returns its exit status here, and src/bin ends the process with it once.
// Errors become one line with their code (`tessera status: ... [TESSERA_ERR_...]`) and the
// exit status of the error table; a usage error adds a pointer to the command's help. No
// stack trace reaches a person.

import { spawn } from 'node:child_process';
import { createApiClient } from '../api/index.js';
import { asTesseraError, exitCodeOf } from '../errors.js';
import { parseUserLabel } from '../identity/index.js';
import { COMMANDS, MAIN_INTRO, MAIN_OUTRO, ORDER, runSpec, versionSpec } from './commands.js';
import { isGroup, printHelp, socketPath } from './common.js';
import { flowsCommand } from './flows.js';
import { caCommand, pskCommand } from './keys.js';
import { processIo, type CliIo } from './output.js';
import { policyCommand } from './policy.js';
import { clusterCommand, trustCommand } from './cluster.js';
import { commandHelp, groupHelp, helpFor, mainHelp, parseCommand, suggest, type CommandSpec, type GroupSpec } from './spec.js';
import { statusCommand } from './status.js';
import { version } from './version.js';

export type { CliIo } from './output.js';

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

async function runCommand(args: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(runSpec, args);
  if (parsed === 'help') return printHelp('run', io);
  const { values, command } = parsed;
  for (const l of values.label) parseUserLabel(l); // fail here, with the label's own message
  const client = createApiClient(socketPath(values.socket));
  await client.createPu({ labels: values.label, pid: process.pid, name: values.name ?? command.join(' ').slice(0, 128) });
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
      resolve(code ?? 128 + (signal ? (SIGNALS[signal] ?? 1) : 1));
    });
  });
}

function versionCommand(args: string[], io: CliIo): number {
  const parsed = parseCommand(versionSpec, args);
  if (parsed === 'help') return printHelp('version', io);
  io.out(parsed.values.json ? JSON.stringify({ version: version(), node: process.versions.node }) : `tessera ${version()}`);
  return 0;
}

type Handler = (args: string[], io: CliIo) => Promise<number> | number;

/** A command the runner can run: its table and what runs it. */
export interface Command {
  readonly spec: CommandSpec | GroupSpec;
  readonly run: Handler;
}

const CLIENT: Record<string, Handler> = {
  run: runCommand,
  status: statusCommand,
  flows: flowsCommand,
  ca: caCommand,
  psk: pskCommand,
  policy: policyCommand,
  cluster: clusterCommand,
  trust: trustCommand,
  version: versionCommand,
};

/** The client commands and the privileged ones src/bin adds, in the main help's order. */
function commandsWith(extra: readonly Command[]): Command[] {
  const all = [...COMMANDS.map((spec) => ({ spec, run: CLIENT[spec.name]! })), ...extra];
  const rank = (c: Command): number => (ORDER.indexOf(c.spec.name) + ORDER.length + 1) % (ORDER.length + 1);
  return all.sort((a, b) => rank(a) - rank(b));
}

export function mainHelpText(extra: readonly Command[] = []): string {
  return mainHelp(MAIN_INTRO, commandsWith(extra).map((c) => c.spec), MAIN_OUTRO);
}

/** One line for any error, its code, and the exit status the error table gives it. */
export function reportError(err: unknown, io: CliIo, command?: string): number {
  const e = asTesseraError(err);
  const h = helpFor(e);
  const who = h ?? command;
  io.err(`tessera${who ? ` ${who}` : ''}: ${e.message} [${e.code}]`);
  if (h) io.err(`See 'tessera ${h} --help'.`);
  if (e.code === 'TESSERA_ERR_INTERNAL' && process.env.TESSERA_DEBUG) io.err(String((e.cause as Error | undefined)?.stack ?? e.stack));
  return exitCodeOf(e.code);
}

/**
 * Run one command line: `extra` are the privileged commands (daemon, cleanup) that src/bin
 * adds, since src/cli does not import the daemon. Returns the exit status.
 */
export async function runCli(argv: string[], io: CliIo = processIo(), extra: readonly Command[] = []): Promise<number> {
  const commands = commandsWith(extra);
  const [word, ...rest] = argv;
  if (word === undefined || word === 'help' || word === '--help' || word === '-h') {
    const c = commands.find((x) => x.spec.name === rest[0]);
    io.out(c ? (isGroup(c.spec) ? groupHelp(c.spec) : commandHelp(c.spec)) : mainHelpText(extra));
    return 0;
  }
  if (word === '--version' || word === '-V') return versionCommand(rest, io);
  const handler = commands.find((c) => c.spec.name === word)?.run;
  if (!handler) {
    const names = commands.map((c) => c.spec.name);
    const name = word.replace(/^-+/, '').split('=')[0]!;
    const ofSome = commands.some(({ spec: c }) => (isGroup(c) ? c.subcommands.flatMap((x) => x.options) : c.options).some((o) => o.name === name));
    const what = !word.startsWith('-')
      ? `unknown command "${word}"${suggest(word, names)}`
      : ofSome
        ? `options go after the command: tessera <command> ${word} ...`
        : `unknown option ${word}${suggest(name, ['help', 'version'], '--')}`;
    io.err(`tessera: ${what} [TESSERA_ERR_INVALID_ARGUMENT]`);
    io.err(`Commands: ${names.join(', ')}. See 'tessera --help'.`);
    return exitCodeOf('TESSERA_ERR_INVALID_ARGUMENT');
  }
  // An error thrown outside the command's promise (an event handler) still ends as one line.
  // The daemon has its own crash path (exit 70, rules kept: src/daemon/index.ts).
  let onUncaught = (_err: unknown): void => {};
  const uncaught = new Promise<number>((resolve) => (onUncaught = (err) => resolve(reportError(err, io, word))));
  if (word !== 'daemon') process.on('uncaughtException', onUncaught);
  try {
    return await Promise.race([handler(rest, io), uncaught]);
  } catch (err) {
    return reportError(err, io, word);
  } finally {
    process.off('uncaughtException', onUncaught);
  }
}
