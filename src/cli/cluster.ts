// `tessera policy push` and `tessera cluster status|keygen`: the operator's side of the
// fleet (src/fleet). They talk to etcd directly, not to a daemon.

import { readFileSync } from 'node:fs';
import { TesseraError, asTesseraError } from '../errors.js';
import { compilePolicy } from '../policy/index.js';
import { connectCluster, type ClusterTlsFiles } from '../fleet/link.js';
import { pushPolicy, readClusterView, renderClusterView, writeOperatorKeyPair } from '../fleet/operator.js';
import { readOperatorPublicFile } from '../fleet/files.js';
import { clusterKeygen, clusterRevoke, clusterStatus, policyPush, trustPush } from './cluster-commands.js';
import { parseBindArg, pushTrust, revokeHost } from '../fleet/trust-ops.js';
import { parseCaPublicFile } from '../identity/index.js';
import { joinCommand } from './cluster-join.js';
import { printHelp, subcommandOf } from './common.js';
import type { CliIo } from './output.js';
import { parseCommand } from './spec.js';

function tlsOf(v: { 'cluster-ca'?: string; 'cluster-cert'?: string; 'cluster-key'?: string }): ClusterTlsFiles {
  return { ...(v['cluster-ca'] ? { caFile: v['cluster-ca'] } : {}), ...(v['cluster-cert'] ? { certFile: v['cluster-cert'] } : {}), ...(v['cluster-key'] ? { keyFile: v['cluster-key'] } : {}) };
}

/** An etcd that does not answer is one clear line, not a gRPC dump. */
function etcdError(url: string, err: unknown): TesseraError {
  if (err instanceof TesseraError) return err;
  const m = (err as { details?: string; message?: string }).details ?? (err as Error).message ?? String(err);
  return new TesseraError('TESSERA_ERR_COMMAND', `etcd ${url}: ${m.replace(/\.?\s*Resolution note:.*$/s, '')}`, { cause: err });
}

export async function policyPushCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(policyPush, args);
  if (p === 'help') return printHelp('policy', io);
  const v = p.values;
  const file = p.positionals[0]!;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw asTesseraError(err);
  }
  const client = connectCluster(v.cluster, tlsOf(v));
  try {
    const r = await pushPolicy(client, {
      keyFile: v['operator-key'],
      text,
      source: file,
      prefix: v['cluster-prefix'],
      validate: (t, source) => {
        const c = compilePolicy(t, { file: source });
        return c.ok ? null : c.errors.map((e) => e.text).join('\n  ');
      },
    }).catch((err: unknown) => {
      throw etcdError(v.cluster, err);
    });
    if (v.json) io.out(JSON.stringify({ file, ...r }));
    else io.out(`${file}: pushed as policy revision ${r.revision} (etcd revision ${r.etcdRevision})${r.replacedUnverified ? '; the stored bundle it replaced did not verify with this key' : ''}`);
    return 0;
  } finally {
    client.close();
  }
}

async function statusCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(clusterStatus, args);
  if (p === 'help') return printHelp('cluster', io);
  const v = p.values;
  const trusted = v['operator-pub'].map((f) => readOperatorPublicFile(f));
  const client = connectCluster(v.cluster, tlsOf(v));
  try {
    const view = await readClusterView(client, { prefix: v['cluster-prefix'], trusted }).catch((err: unknown) => {
      throw etcdError(v.cluster, err);
    });
    io.out(v.json ? JSON.stringify(view, null, 2) : renderClusterView(view).trimEnd());
    return 0;
  } finally {
    client.close();
  }
}

function keygenCommand(args: string[], io: CliIo): number {
  const p = parseCommand(clusterKeygen, args);
  if (p === 'help') return printHelp('cluster', io);
  const r = writeOperatorKeyPair(p.values.out);
  io.out(p.values.json ? JSON.stringify(r) : `operator key ${r.keyId}: private ${r.keyFile} (mode 600, keep it with the operator), public ${r.pubFile} (every daemon: --operator-pub)`);
  return 0;
}

async function revokeCommand(args: string[], io: CliIo): Promise<number> {
  const p = parseCommand(clusterRevoke, args);
  if (p === 'help') return printHelp('cluster', io);
  const v = p.values;
  const host = p.positionals[0]!;
  const client = connectCluster(v.cluster, tlsOf(v));
  try {
    const r = await revokeHost(client, { keyFile: v['operator-key'], host, undo: v.undo, prefix: v['cluster-prefix'] }).catch((err: unknown) => {
      throw etcdError(v.cluster, err);
    });
    if (v.json) io.out(JSON.stringify({ host, revoked: !v.undo, ...r }));
    else io.out(`${host}: ${v.undo ? 'revocation lifted' : 'revoked'}${r.changed ? '' : ' (already so)'} in trust revision ${r.revision} (etcd revision ${r.etcdRevision})`);
    return 0;
  } finally {
    client.close();
  }
}

export async function trustCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp('trust', io);
  subcommandOf('trust', sub);
  const p = parseCommand(trustPush, rest);
  if (p === 'help') return printHelp('trust', io);
  const v = p.values;
  const cas = v.ca.map((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw asTesseraError(err);
    }
    const ca = parseCaPublicFile(text);
    return { name: ca.name, publicJwk: { ...ca.publicJwk } };
  });
  if (v['no-bind'] && v.bind.length > 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--bind and --no-bind exclude each other');
  const bindings = v['no-bind'] ? [] : v.bind.length > 0 ? v.bind.map(parseBindArg) : undefined;
  const client = connectCluster(v.cluster, tlsOf(v));
  try {
    const r = await pushTrust(client, { keyFile: v['operator-key'], ...(cas.length > 0 ? { cas } : {}), ...(bindings ? { labelBindings: bindings } : {}), prefix: v['cluster-prefix'] }).catch((err: unknown) => {
      throw etcdError(v.cluster, err);
    });
    const p2 = r.payload;
    if (v.json) io.out(JSON.stringify({ revision: r.revision, etcdRevision: r.etcdRevision, cas: p2.cas.map((c) => c.name), revoked: p2.revoked.map((e) => e.host), labelBindings: p2.labelBindings ?? [] }));
    else io.out(`pushed as trust revision ${r.revision} (etcd revision ${r.etcdRevision}): ${p2.cas.length === 0 ? "each daemon's --ca" : `CAs ${p2.cas.map((c) => c.name).join(', ')}`}, ${p2.revoked.length} revoked, ${(p2.labelBindings ?? []).length} label binding(s)`);
    return 0;
  } finally {
    client.close();
  }
}

export async function clusterCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp('cluster', io);
  const name = subcommandOf('cluster', sub);
  if (name === 'status') return statusCommand(rest, io);
  if (name === 'revoke') return revokeCommand(rest, io);
  if (name === 'join') return joinCommand(rest, io, etcdError);
  return keygenCommand(rest, io);
}
