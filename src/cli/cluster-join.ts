// `tessera cluster join`: enroll a host in the fleet. Issues its certificate with the CA (a
// short lifetime: 7 days unless --days), keeping the host's key when it already has one (that
// is renewal: run it again before expiry, then restart the daemon), and publishes the host's
// directory entry (certificate, handshake key, addresses) in etcd. The daemon republishes
// the entry at every start with what it runs.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError, asTesseraError } from '../errors.js';
import { connectCluster } from '../fleet/link.js';
import { canonicalAddress } from '../fleet/directory.js';
import { writeFileAtomic } from '../fleet/files.js';
import { localAddresses, publishHostEntry } from '../fleet/hosts.js';
import { createLayout } from '../fleet/layout.js';
import { createHostKey, inspectCertificate, issueHostCertificate, parseCaFile, parseHostIdentityFile, serializeHostIdentity } from '../identity/index.js';
import { clusterJoin } from './cluster-commands.js';
import { printHelp } from './common.js';
import { ensureDir } from './fs.js';
import type { CliIo } from './output.js';
import { parseCommand } from './spec.js';

function readPrivate(path: string, what: string): string {
  try {
    if ((statSync(path).mode & 0o077) !== 0) throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path} is readable by group or others: run chmod 600 ${path}`);
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw asTesseraError(err);
  }
}

function handshakeKeyOf(stateDir: string): string | null {
  const path = join(stateDir, 'handshake.key');
  if (!existsSync(path)) return null;
  const x = (JSON.parse(readPrivate(path, 'handshake key')) as { x?: unknown }).x;
  return typeof x === 'string' && /^[A-Za-z0-9_-]{43}$/.test(x) ? x : null;
}

export async function joinCommand(args: string[], io: CliIo, etcdError: (url: string, err: unknown) => Error): Promise<number> {
  const p = parseCommand(clusterJoin, args);
  if (p === 'help') return printHelp('cluster', io);
  const v = p.values;
  const layout = createLayout(v['cluster-prefix']);
  const host = v.host;
  layout.host(host); // a malformed host id is refused before anything is written
  const addresses = (v.address.length > 0 ? v.address : localAddresses()).map((a) => {
    const c = canonicalAddress(a);
    if (c === null) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `--address ${JSON.stringify(a)} is not an IP address`);
    return c;
  });
  const ca = parseCaFile(readPrivate(v.ca, 'CA private file'));
  ensureDir(v.out, 0o700);
  const keyFile = join(v.out, `${host}.key.json`);
  const certFile = join(v.out, `${host}.cert`);
  const renewing = existsSync(keyFile);
  let key;
  if (renewing) {
    const id = parseHostIdentityFile(readPrivate(keyFile, 'host key file'));
    if (id.mode !== 'ca' || id.hostId !== host) throw new TesseraError('TESSERA_ERR_KEY_FILE', `${keyFile} is not a CA-mode identity of ${host}`);
    key = { privateJwk: id.privateJwk, publicJwk: id.publicJwk };
  } else {
    key = await createHostKey();
  }
  const certificate = await issueHostCertificate(ca, { host, hostPublicJwk: key.publicJwk, validityDays: v.days });
  writeFileAtomic(keyFile, serializeHostIdentity({ mode: 'ca', hostId: host, ...key, certificate }), 0o600);
  writeFileAtomic(certFile, certificate + '\n', 0o644);
  const handshakeKey = v['state-dir'] ? handshakeKeyOf(v['state-dir']) : null;
  const tls = { ...(v['cluster-ca'] ? { caFile: v['cluster-ca'] } : {}), ...(v['cluster-cert'] ? { certFile: v['cluster-cert'] } : {}), ...(v['cluster-key'] ? { keyFile: v['cluster-key'] } : {}) };
  const client = connectCluster(v.cluster, tls);
  try {
    await publishHostEntry(client, layout, { host, certificate, handshakeKey, addresses, publishedAt: new Date().toISOString() }).catch((err: unknown) => {
      throw etcdError(v.cluster, err);
    });
  } finally {
    client.close();
  }
  const exp = new Date(inspectCertificate(certificate).exp * 1000).toISOString();
  if (v.json) io.out(JSON.stringify({ host, renewed: renewing, certFile, keyFile, expires: exp, addresses, handshakeKey }));
  else io.out(`${host}: ${renewing ? 'certificate renewed (same key)' : 'enrolled'}, valid until ${exp}; wrote ${certFile} and ${keyFile} (private); directory entry ${layout.host(host)} with ${addresses.length} address(es)${handshakeKey ? ' and its handshake key' : ''}`);
  return 0;
}
