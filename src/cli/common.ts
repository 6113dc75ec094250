// Small pieces every command uses: where the daemon is, and printing a command's help.

import { COMMANDS, DEFAULT_SOCKET } from './commands.js';
import { commandHelp, groupHelp, suggest, usageError, type CommandSpec, type GroupSpec } from './spec.js';
import type { CliIo } from './output.js';

export function socketPath(flag: string | undefined): string {
  return flag ?? process.env.TESSERA_SOCKET ?? DEFAULT_SOCKET;
}

export function isGroup(c: CommandSpec | GroupSpec): c is GroupSpec {
  return 'subcommands' in c;
}

/** The help of a command ("ca init" shows its group's), generated from its table. */
export function helpText(name: string): string | undefined {
  const c = COMMANDS.find((x) => x.name === name.split(' ')[0]);
  return c === undefined ? undefined : isGroup(c) ? groupHelp(c) : commandHelp(c);
}

export function printHelp(name: string, io: CliIo): number {
  io.out(helpText(name)!);
  return 0;
}

/** A group's subcommand by name, or a usage error naming the nearest one. */
export function subcommandOf(group: string, sub: string | undefined): string {
  const g = COMMANDS.find((c) => c.name === group);
  const names = g && isGroup(g) ? g.subcommands.map((s) => s.name.split(' ')[1]!) : [];
  if (sub === undefined) throw usageError(group, `needs a subcommand: ${names.join(', ')}`);
  if (!names.includes(sub)) throw usageError(group, `unknown subcommand "${sub}"${suggest(sub, names)}; one of ${names.join(', ')}`);
  return sub;
}
