// The tables of the fleet's client commands (docs/cluster.md): `tessera policy push`,
// `tessera cluster status|keygen`. Kept apart from commands.ts, which lists them.

import type { CommandSpec, GroupSpec, OptionSpec } from './spec.js';

const json = { name: 'json', kind: 'flag', help: 'machine-readable output (JSON), for scripts' } as const satisfies OptionSpec;
const cluster = { name: 'cluster', kind: 'string', arg: 'etcd://HOST:PORT,...', required: true, help: 'the fleet\'s etcd (etcds:// for TLS)' } as const satisfies OptionSpec;
const tls = [
  { name: 'cluster-ca', kind: 'string', arg: 'FILE', help: "CA (PEM) of etcd's TLS certificates" },
  { name: 'cluster-cert', kind: 'string', arg: 'FILE', help: 'TLS client certificate (PEM)' },
  { name: 'cluster-key', kind: 'string', arg: 'FILE', help: 'TLS client key (PEM, mode 600)' },
] as const satisfies readonly OptionSpec[];
const prefix = { name: 'cluster-prefix', kind: 'string', arg: 'PREFIX', default: '/tessera/v1/', help: "the fleet's key prefix in etcd" } as const satisfies OptionSpec;

export const policyPush = {
  name: 'policy push',
  summary: 'validate a policy file, sign it with the operator key, store it in the fleet',
  description: '',
  options: [cluster, { name: 'operator-key', kind: 'string', arg: 'FILE', required: true, help: 'the operator private key (mode 600; tessera cluster keygen)' }, ...tls, prefix, json],
  positionals: { name: 'FILE', min: 1, max: 1 },
} as const satisfies CommandSpec;

export const clusterStatus = {
  name: 'cluster status',
  summary: "every host's applied policy revision, sync and health",
  description: '',
  options: [cluster, { name: 'operator-pub', kind: 'string', arg: 'FILE', multiple: true, help: "verify the stored bundle's signature with this operator public key" }, ...tls, prefix, json],
} as const satisfies CommandSpec;

export const clusterKeygen = {
  name: 'cluster keygen',
  summary: 'create the operator key pair that signs fleet bundles',
  description: '',
  options: [{ name: 'out', kind: 'string', arg: 'PATH', required: true, help: 'writes PATH.key.json (mode 600, keep it with the operator) and PATH.pub.json (every daemon: --operator-pub)' }, json],
} as const satisfies CommandSpec;

const operatorKey = { name: 'operator-key', kind: 'string', arg: 'FILE', required: true, help: 'the operator private key (mode 600; tessera cluster keygen)' } as const satisfies OptionSpec;

export const clusterRevoke = {
  name: 'cluster revoke',
  summary: "revoke a host: every peer refuses its tokens (reason revoked) once the trust bundle reaches it",
  description: '',
  options: [cluster, operatorKey, { name: 'undo', kind: 'flag', help: 'lift the revocation of HOST instead' }, ...tls, prefix, json],
  positionals: { name: 'HOST', min: 1, max: 1 },
} as const satisfies CommandSpec;

export const clusterJoin = {
  name: 'cluster join',
  summary: "enroll a host: issue its certificate (short lifetime; again before expiry renews it) and publish its directory entry",
  usage: ['cluster join --cluster URL --ca DIR/ca.json --host HOST --out DIR [options]'],
  description: '',
  options: [
    cluster,
    { name: 'ca', kind: 'string', arg: 'DIR/ca.json', required: true, help: 'the CA private file (mode 600)' },
    { name: 'host', kind: 'string', arg: 'HOST', required: true, help: 'the host id the certificate is for' },
    { name: 'out', kind: 'string', arg: 'DIR', required: true, help: 'writes DIR/HOST.cert and DIR/HOST.key.json (mode 600); an existing key is kept (renewal)' },
    { name: 'days', kind: 'int', min: 1, max: 365, default: 7, help: 'certificate lifetime in days' },
    { name: 'address', kind: 'string', arg: 'ADDR', multiple: true, defaultText: "this machine's non-loopback addresses", help: "the host's address, published with its handshake key" },
    { name: 'state-dir', kind: 'string', arg: 'DIR', help: "the daemon's state directory: publish its handshake key (DIR/handshake.key) if it has one" },
    ...tls,
    prefix,
    json,
  ],
} as const satisfies CommandSpec;

export const trustPush = {
  name: 'trust push',
  summary: "sign and store the fleet's trust bundle: CA keys and labels bound to hosts (revocations are kept)",
  description: '',
  options: [
    cluster,
    operatorKey,
    { name: 'ca', kind: 'string', arg: 'FILE', multiple: true, help: "a CA public file (tessera ca init's ca.pub.json) every daemon trusts instead of its --ca; none given: the stored list (empty: each daemon's --ca)" },
    { name: 'bind', kind: 'string', arg: 'LABEL:HOST,...', multiple: true, help: 'only these hosts may claim LABEL (key=value, or key=* for every value); replaces the stored bindings' },
    { name: 'no-bind', kind: 'flag', help: 'remove every label binding' },
    ...tls,
    prefix,
    json,
  ],
} as const satisfies CommandSpec;

export const trustSpec = {
  name: 'trust',
  summary: "the fleet's trust bundle: CAs, revoked hosts, labels bound to hosts",
  description: `push signs the trust bundle with the operator key and stores it in the fleet's etcd
(docs/cluster.md). Every daemon started with --cluster verifies it and applies it without a
restart: its CA keys replace the daemon's --ca (an empty list keeps --ca), tokens of revoked
hosts are refused (reason revoked), and a token claiming a bound label from a host the
binding does not list is refused (reason label-not-allowed). Revocations are added with
tessera cluster revoke HOST and kept by every push.`,
  subcommands: [trustPush],
} as const satisfies GroupSpec;

export const clusterSpec = {
  name: 'cluster',
  summary: 'the fleet on etcd: convergence status, operator keys, revocation',
  description: `status lists every host that publishes its status in the fleet's etcd (docs/cluster.md):
the policy revision it applied, whether that is the stored one, its health and how stale
its view of etcd is. A host that stops renewing its lease disappears from the list.
keygen creates the operator key pair (Ed25519, separate from the CA's): bundles are
signed with the private file (tessera policy push), daemons verify with the public one.
join enrolls a host: a CA-issued certificate with a short lifetime (7 days by default;
running join again with the same --out renews it, same key) and its entry in the host
directory (certificate, handshake key, addresses). A daemon whose certificate has a third
of its lifetime left reports health degraded (component certificate) until renewed.
revoke HOST adds HOST to the signed trust bundle: every peer refuses its tokens (new
connections, cached tokens included) with reason revoked once the bundle reaches it;
--undo lifts it.`,
  subcommands: [clusterStatus, clusterKeygen, clusterJoin, clusterRevoke],
} as const satisfies GroupSpec;
