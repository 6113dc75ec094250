// `tessera policy check|explain|show`: validate a policy file, explain a decision, or show
// the running daemon's policy. check and explain work on files without a daemon.

import { readFileSync } from 'node:fs';
import { asTesseraError } from '../errors.js';
import { check, explain, loadPolicy, type Policy } from '../policy/index.js';
import { canonicalLabels } from '../identity/index.js';
import { createApiClient } from '../api/index.js';
import { policyCheck, policyExplain, policyShow } from './commands.js';
import { printHelp, socketPath, subcommandOf } from './common.js';
import type { CliIo } from './output.js';
import { policyPushCommand } from './cluster.js';
import { diffCommand, edgesCommand, promoteCommand, suggestCommand } from './learn.js';
import { parseCommand, usageError } from './spec.js';

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw asTesseraError(err);
  }
}

/** "app=web,env=prod" (or repeated flags) -> canonical labels; "none" -> an unprotected peer. */
function labelsArg(values: readonly string[], flag: string): string[] | null {
  if (values.length === 0) throw usageError('policy explain', `${flag} is required (labels like app=web,env=prod, or "none" for a peer without Tessera)`);
  if (values.length === 1 && values[0] === 'none') return null;
  return [...canonicalLabels(values.flatMap((v) => v.split(',')).filter((v) => v !== ''))];
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

function checkCommand(args: string[], io: CliIo): number {
  const p = parseCommand(policyCheck, args);
  if (p === 'help') return printHelp('policy', io);
  const file = p.positionals[0]!;
  const r = check(readText(file), { file });
  if (p.values.json) {
    io.out(JSON.stringify({ file, ok: r.ok, errors: r.errors, warnings: r.warnings }, null, 2));
    return r.ok ? 0 : 1;
  }
  for (const e of r.errors) io.err(e.text);
  for (const w of r.warnings) io.err(w.text);
  io.out(r.ok ? `${file}: ok${r.warnings.length ? ` (${plural(r.warnings.length, 'warning')})` : ''}` : `${file}: ${plural(r.errors.length, 'error')}`);
  return r.ok ? 0 : 1;
}

async function explainCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyExplain, args);
  if (p === 'help') return printHelp('policy', io);
  const v = p.values;
  const from = labelsArg(v.from, '--from');
  const to = labelsArg(v.to, '--to');
  let policy: Policy;
  let source: string;
  if (v.policy) {
    source = v.policy;
    policy = loadPolicy(readText(source), { file: source });
  } else {
    const running = await createApiClient(socketPath(v.socket)).policy();
    source = running.name;
    policy = loadPolicy(running.text, { file: running.name });
  }
  const e = explain(policy, { from, to, port: v.port, protocol: v.protocol as 'tcp' | 'udp', direction: v.direction as 'both' | 'ingress' | 'egress', ...(v.peer ? { peerAddr: v.peer } : {}) });
  if (v.json) {
    io.out(JSON.stringify(e, null, 2));
    return 0;
  }
  const d = e.decision;
  io.out(`policy: ${source}`);
  io.out(`${from ? from.join(',') : 'peer without tessera'} -> ${to ? to.join(',') : 'peer without tessera'} ${v.protocol === 'udp' ? 'udp ' : ''}port ${v.port}: ${d.allow ? (d.audit ? 'ALLOW (audit: enforcing would refuse)' : 'ALLOW') : 'REJECT'} by ${d.ruleId}${d.reject ? ` (${d.reject})` : ''}`);
  for (const step of e.chain) io.out(`  ${step.direction.padEnd(7)} ${step.matched ? 'match' : '  -  '} ${step.ruleId}${step.line ? ` (line ${step.line})` : ''}: ${step.why}`);
  return 0;
}

async function showCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyShow, args);
  if (p === 'help') return printHelp('policy', io);
  const running = await createApiClient(socketPath(p.values.socket)).policy();
  if (p.values.json) {
    io.out(JSON.stringify(running, null, 2));
    return 0;
  }
  io.out(`# ${running.name}`);
  io.out(running.text.trimEnd());
  return 0;
}

export async function policyCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp('policy', io);
  const name = subcommandOf('policy', sub);
  if (name === 'check') return checkCommand(rest, io);
  if (name === 'explain') return explainCommand(rest, io);
  if (name === 'push') return policyPushCommand(rest, io);
  if (name === 'suggest') return suggestCommand(rest, io);
  if (name === 'diff') return diffCommand(rest, io);
  if (name === 'promote') return promoteCommand(rest, io);
  if (name === 'edges') return edgesCommand(rest, io);
  return showCommand(rest, io);
}
