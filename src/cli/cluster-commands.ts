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

export const clusterSpec = {
  name: 'cluster',
  summary: 'the fleet on etcd: convergence status, operator keys',
  description: `status lists every host that publishes its status in the fleet's etcd (docs/cluster.md):
the policy revision it applied, whether that is the stored one, its health and how stale
its view of etcd is. A host that stops renewing its lease disappears from the list.
keygen creates the operator key pair (Ed25519, separate from the CA's): bundles are
signed with the private file (tessera policy push), daemons verify with the public one.`,
  subcommands: [clusterStatus, clusterKeygen],
} as const satisfies GroupSpec;
