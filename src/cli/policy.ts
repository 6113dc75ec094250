// `tessera policy check|explain|show`: validate a policy file, explain a decision, or show
// the running daemon's policy. check and explain work on files without a daemon.

import { readFileSync } from 'node:fs';
import { TesseraError } from '../errors.js';
import { check, explain, loadPolicy, type Policy } from '../policy/index.js';
import { canonicalLabels } from '../identity/index.js';
import { createApiClient } from '../api/index.js';
import { HELP } from './help.js';
import { parse, socketPath, type CliIo } from './main.js';

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** "app=web,env=prod" (or repeated flags) -> canonical labels; "none" -> an unprotected peer. */
function labelsArg(values: string[] | undefined, flag: string): string[] | null {
  if (!values || values.length === 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${flag} is required (labels like app=web,env=prod, or "none" for a peer without Tessera)\nSee: tessera policy --help`);
  if (values.length === 1 && values[0] === 'none') return null;
  return [...canonicalLabels(values.flatMap((v) => v.split(',')).filter((v) => v !== ''))];
}

export async function policyCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'check') {
    const { values, positionals } = parse('policy', rest, {}, true);
    if (values.help) return io.out(HELP.policy!), 0;
    if (positionals.length !== 1) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'tessera policy check takes one FILE\nSee: tessera policy --help');
    const file = positionals[0]!;
    const r = check(readText(file), { file });
    for (const e of r.errors) io.err(e.text);
    for (const w of r.warnings) io.err(w.text);
    io.out(r.ok ? `${file}: ok${r.warnings.length ? ` (${r.warnings.length} warning${r.warnings.length > 1 ? 's' : ''})` : ''}` : `${file}: ${r.errors.length} error${r.errors.length > 1 ? 's' : ''}`);
    return r.ok ? 0 : 1;
  }
  if (sub === 'explain') {
    const { values } = parse('policy', rest, {
      from: { type: 'string', multiple: true },
      to: { type: 'string', multiple: true },
      port: { type: 'string' },
      peer: { type: 'string' },
      direction: { type: 'string' },
      policy: { type: 'string' },
      socket: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) return io.out(HELP.policy!), 0;
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--port must be 1..65535\nSee: tessera policy --help');
    const direction = (values.direction as string | undefined) ?? 'both';
    if (!['both', 'ingress', 'egress'].includes(direction)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--direction must be both, ingress or egress');
    const from = labelsArg(values.from as string[] | undefined, '--from');
    const to = labelsArg(values.to as string[] | undefined, '--to');
    let policy: Policy;
    let source: string;
    if (values.policy) {
      source = values.policy as string;
      policy = loadPolicy(readText(source), { file: source });
    } else {
      const running = await createApiClient(socketPath(values.socket as string | undefined)).policy();
      source = running.name;
      policy = loadPolicy(running.text, { file: running.name });
    }
    const e = explain(policy, { from, to, port, direction: direction as 'both' | 'ingress' | 'egress', ...(values.peer ? { peerAddr: values.peer as string } : {}) });
    if (values.json) {
      io.out(JSON.stringify(e, null, 2));
      return 0;
    }
    const d = e.decision;
    io.out(`policy: ${source}`);
    io.out(`${from ? from.join(',') : 'peer without tessera'} -> ${to ? to.join(',') : 'peer without tessera'} port ${port}: ${d.allow ? (d.audit ? 'ALLOW (audit: enforcing would refuse)' : 'ALLOW') : 'REJECT'} by ${d.ruleId}${d.reject ? ` (${d.reject})` : ''}`);
    for (const step of e.chain) io.out(`  ${step.direction.padEnd(7)} ${step.matched ? 'match' : '  -  '} ${step.ruleId}${step.line ? ` (line ${step.line})` : ''}: ${step.why}`);
    return 0;
  }
  if (sub === 'show') {
    const { values } = parse('policy', rest, { socket: { type: 'string' } });
    if (values.help) return io.out(HELP.policy!), 0;
    const p = await createApiClient(socketPath(values.socket as string | undefined)).policy();
    io.out(`# ${p.name}`);
    io.out(p.text.trimEnd());
    return 0;
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return io.out(HELP.policy!), 0;
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `unknown subcommand "policy ${sub}"\nSee: tessera policy --help`);
}
