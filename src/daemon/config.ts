// Daemon settings, their defaults and their validation. Validation happens once, here, with
// messages that name the fix; nothing downstream re-checks.

import { TesseraError } from '../errors.js';
import { checkUiListen } from '../ui/index.js';
import { parseClusterUrl } from '../fleet/url.js';

export interface DaemonConfig {
  /** Where the host secret and PU state live. */
  stateDir: string;
  /** Local API socket (HTTP over a unix socket). */
  socket: string;
  /** Name of our net_cls subtree; one per daemon when several share a machine. */
  cgroupRoot: string;
  queueBase: number;
  queues: number;
  failOpen: boolean;
  trust: { mode: 'psk'; pskFile: string } | { mode: 'ca'; caFile: string; certFile: string; keyFile: string };
  /** Host name in tokens (PSK mode; CA mode takes it from the certificate). */
  hostId: string;
  rejectMode: 'reset' | 'drop';
  /** How a refused UDP datagram of a PU ends: silence (default) or an ICMP port unreachable (inbound only). A rule's `reject: reset` asks for ICMP whatever this says. */
  udpRefusal?: 'drop' | 'icmp';
  /** Largest packet we emit after attaching a token. */
  mtu: number;
  /** Token lifetime; tokens are re-issued at half of it. */
  tokenTtlSeconds: number;
  clockSkewSeconds: number;
  logLevel: string;
  /**
   * 'passes' (--accept-all, benchmark only): handshake packets take their four queue passes
   * and are accepted unchecked; 'passes6' (--accept-all --six-passes): the same with the
   * client's first ACK queued at both ends too, as protocol v1 did.
   */
  datapathMode: 'handshake' | 'passes' | 'passes6';
  /** How often PU listening ports are rediscovered (ms). */
  portScanMs: number;
  /** Policy file (YAML); absent: the built-in default policy. Watched and reloaded. */
  policyFile?: string;
  /** Follow the fleet's signed bundles in etcd (docs/cluster.md); the policy then comes from there. */
  cluster?: { url: string; caFile?: string; certFile?: string; keyFile?: string; operatorPubFiles: string[]; prefix?: string; version?: string; maxStaleSeconds?: number };
  /** Follow this Docker engine and protect its running containers (off unless given). */
  docker?: { socket: string };
  /**
   * Remove our rules (host and container namespaces) and give adopted classids back when
   * stopped (SIGTERM/SIGINT). Default false: a stopped daemon leaves enforcement in place,
   * fail-closed, so a restart or an upgrade opens no window; `tessera cleanup` removes it.
   */
  removeRulesOnStop?: boolean;
  /** --metrics-listen: /metrics, /healthz and /readyz over TCP (off unless given). */
  metricsListen?: { host: string; port: number };
  /** --ui and --ui-token-file: the flow map (docs/ui.md); off unless given. */
  ui?: { listen: { host: string; port: number }; tokenFile?: string };
}

export const DEFAULTS = {
  stateDir: '/var/lib/tessera',
  socket: '/run/tessera/tessera.sock',
  cgroupRoot: 'tessera',
  queueBase: 0,
  queues: 1,
  failOpen: false,
  rejectMode: 'reset',
  udpRefusal: 'drop',
  mtu: 1500,
  tokenTtlSeconds: 600,
  clockSkewSeconds: 30,
  logLevel: 'info',
  datapathMode: 'handshake',
  portScanMs: 250,
  dockerSocket: '/var/run/docker.sock',
} as const;

function bad(message: string): never {
  throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', message);
}

export function validateConfig(c: DaemonConfig): DaemonConfig {
  if (!Number.isInteger(c.queueBase) || c.queueBase < 0 || c.queueBase > 65_535) bad(`--queue-base must be 0..65535, got ${c.queueBase}`);
  if (!Number.isInteger(c.queues) || c.queues < 1 || c.queues > 16) bad(`--queues must be 1..16, got ${c.queues}`);
  if (c.queueBase + c.queues - 1 > 65_535) bad('--queue-base + --queues exceeds queue number 65535');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(c.cgroupRoot)) bad(`--cgroup-root must be a simple directory name, got "${c.cgroupRoot}"`);
  if (!Number.isInteger(c.mtu) || c.mtu < 1280 || c.mtu > 65_535) bad(`--mtu must be 1280..65535, got ${c.mtu}`);
  if (!Number.isInteger(c.tokenTtlSeconds) || c.tokenTtlSeconds < 60 || c.tokenTtlSeconds > 86_400) bad('--token-ttl must be 60..86400 seconds');
  if (!Number.isInteger(c.clockSkewSeconds) || c.clockSkewSeconds < 0 || c.clockSkewSeconds > 600) bad('--clock-skew must be 0..600 seconds');
  if (c.rejectMode !== 'reset' && c.rejectMode !== 'drop') bad(`--reject must be reset or drop, got "${c.rejectMode}"`);
  if (c.udpRefusal !== undefined && c.udpRefusal !== 'drop' && c.udpRefusal !== 'icmp') bad(`--udp-refusal must be drop or icmp, got "${String(c.udpRefusal)}"`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(c.hostId)) bad(`--host-id must be a host name, got "${c.hostId}"`);
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(c.logLevel)) bad(`--log-level must be one of fatal, error, warn, info, debug, trace, silent`);
  if (c.cluster && c.policyFile) bad('--policy and --cluster exclude each other: with --cluster the policy comes from etcd (tessera policy push)');
  if (c.cluster) {
    try {
      parseClusterUrl(c.cluster.url);
    } catch (err) {
      bad(`--cluster: ${(err as Error).message}`);
    }
  }
  if (c.cluster && c.cluster.operatorPubFiles.length === 0) bad('--cluster needs --operator-pub FILE (the operator public key that signs fleet bundles)');
  if (c.docker && !c.docker.socket.startsWith('/')) bad(`--docker takes the absolute path of the engine's socket, got "${c.docker.socket}"`);
  if (c.ui) checkUiListen(c.ui.listen, c.ui.tokenFile);
  return c;
}
