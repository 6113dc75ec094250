// `tessera policy suggest|diff|promote` (docs/learning.md). The edges come from the running
// daemon (GET /v1/learn/edges, merged with the cluster's when it has a store) or a saved
// edges.json; suggesting and replaying are pure (src/learn).

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { TesseraError, asTesseraError } from '../errors.js';
import { createApiClient } from '../api/index.js';
import { loadPolicy } from '../policy/index.js';
import { EdgeTable, compare, describeEdge, diff, parseTable, suggest, type EdgeTableJson } from '../learn/index.js';
import { parseSelectorArg, promoteText } from '../learn/promote.js';
import type { PuMode } from '../policy/modes.js';
import { printHelp, socketPath } from './common.js';
import type { CliIo } from './output.js';
import { policyDiff, policyEdges, policyPromote, policySuggest } from './learn-commands.js';
import { parseCommand } from './spec.js';

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw asTesseraError(err);
  }
}

async function loadEdges(files: readonly string[], socket: string | undefined): Promise<EdgeTableJson> {
  if (files.length === 0) return parseTable(await createApiClient(socketPath(socket)).learnEdges());
  const all = new EdgeTable();
  for (const file of files) {
    try {
      all.merge(parseTable(JSON.parse(readText(file))));
    } catch (err) {
      if (err instanceof TesseraError) throw err;
      throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${file}: not a saved edge table (${(err as Error).message})`);
    }
  }
  return all.toJSON();
}

export async function suggestCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policySuggest, args);
  if (p === 'help') return printHelp('policy', io);
  const v = p.values;
  const table = await loadEdges(v.edges, v.socket);
  const now = Date.now();
  const s = suggest(table, { now, ...(v.since !== undefined ? { since: now - v.since } : {}), maxCidrs: v['max-cidrs'], rareCount: v.rare });
  if (v.out) {
    try {
      writeFileSync(v.out, s.text, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      throw asTesseraError(err);
    }
  }
  if (v.json) io.out(JSON.stringify({ text: s.text, edges: s.edges, warnings: s.warnings, groups: s.groups, rules: s.rules.map((r) => ({ id: r.id, ports: r.ports, connections: r.connections, rare: r.rare })) }, null, 2));
  else if (v.out) io.out(`${v.out}: ${s.rules.length} rule(s) from ${s.edges} edge(s)${s.rules.some((r) => r.rare) ? `, ${s.rules.filter((r) => r.rare).length} flagged rare` : ''}`);
  else io.out(s.text.trimEnd());
  for (const w of s.warnings) io.err(`warning: ${w}`);
  return 0;
}

export async function diffCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyDiff, args);
  if (p === 'help') return printHelp('policy', io);
  const v = p.values;
  const file = p.positionals[0]!;
  const policy = loadPolicy(readText(file), { file });
  const table = await loadEdges(v.edges, v.socket);
  const since = v.since !== undefined ? Date.now() - v.since : undefined;
  const d = diff(policy, table, since);
  // Against the running policy, when there is a daemon to ask (not with --edges).
  let changes: ReturnType<typeof compare> | null = null;
  if (v.edges.length === 0) {
    const running = await createApiClient(socketPath(v.socket)).policy();
    changes = compare(loadPolicy(running.text, { file: running.name }), policy, table, since);
  }
  if (v.json) {
    io.out(
      JSON.stringify(
        {
          file,
          edges: d.edges,
          allowed: d.allowed,
          refused: d.refused.map((r) => ({ edge: describeEdge(r.edge), ruleId: r.ruleId, direction: r.direction })),
          unused: d.unused,
          ...(changes ? { newlyRefused: changes.newlyRefused.map((c) => describeEdge(c.edge)), newlyAllowed: changes.newlyAllowed.map((c) => describeEdge(c.edge)) } : {}),
        },
        null,
        2,
      ),
    );
  } else {
    io.out(`${file}: ${d.edges} observed edge(s), ${d.allowed} allowed, ${d.refused.length} refused`);
    for (const r of d.refused) io.out(`  REFUSE ${describeEdge(r.edge)} by ${r.ruleId} (${r.direction === 'ingress' ? "server's check" : "client's check"})`);
    io.out(d.unused.length ? `rules no observed edge used: ${d.unused.join(', ')}` : 'every rule was used by an observed edge');
    if (changes) {
      io.out(`against the running policy: ${changes.newlyRefused.length} edge(s) newly refused, ${changes.newlyAllowed.length} newly allowed`);
      for (const c of changes.newlyRefused) io.out(`  - ${describeEdge(c.edge)} (by ${c.after.ruleId})`);
      for (const c of changes.newlyAllowed) io.out(`  + ${describeEdge(c.edge)} (by ${c.after.ruleId})`);
    }
  }
  return d.refused.length > 0 ? 1 : 0;
}

export async function promoteCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyPromote, args);
  if (p === 'help') return printHelp('policy', io);
  const v = p.values;
  let file = v.policy;
  if (file === undefined) {
    const source = (await createApiClient(socketPath(v.socket)).status()).policy.source;
    if (source === 'built-in' || !existsSync(source)) {
      throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `the running policy is ${source}, not a file this command can edit: give --policy FILE (with --cluster: edit your file, then tessera policy push)`);
    }
    file = source;
  }
  const r = promoteText(readText(file), parseSelectorArg(p.positionals[0]!), v.to as PuMode | undefined);
  if (v['dry-run']) io.out(r.text.trimEnd());
  else {
    try {
      const tmp = `${file}.tessera-promote`;
      writeFileSync(tmp, r.text);
      renameSync(tmp, file);
    } catch (err) {
      throw asTesseraError(err);
    }
  }
  const what = Object.entries(r.selector).map(([k, val]) => `${k}=${val}`).join(',');
  if (v.json) io.out(JSON.stringify({ file, selector: r.selector, from: r.from, to: r.to, written: !v['dry-run'] }));
  else io.err(`${what}: ${r.from} → ${r.to}${v['dry-run'] ? ' (dry run: not written)' : ` in ${file} (a running daemon reloads it)`}`);
  return 0;
}

export async function edgesCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyEdges, args);
  if (p === 'help') return printHelp('policy', io);
  const text = JSON.stringify(await loadEdges([], p.values.socket));
  if (p.values.out === undefined) io.out(text);
  else {
    try {
      writeFileSync(p.values.out, text + '\n', { flag: 'wx', mode: 0o600 });
    } catch (err) {
      throw asTesseraError(err);
    }
  }
  return 0;
}
