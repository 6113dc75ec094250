// `docker inspect` JSON -> what Tessera needs to make a container a PU: identity (user labels
// from `docker run -l` and the image, system labels the engine vouches for), how to reach its
// traffic (network mode, IP, netns path, PID 1) and its security posture. Pure: no I/O, so it is
// tested on saved inspect answers (test/fixtures/docker/).

import { canonicalLabels, parseLabel, parseUserLabel } from '../../identity/index.js';
import { errorMessage } from '../../errors.js';

/**
 * The fields of the Engine API's container inspect answer that we read (a structural subset
 * of dockerode's ContainerInspectInfo; every field optional so a partial or older answer
 * still extracts).
 */
export interface InspectLike {
  Id?: string;
  Name?: string;
  State?: { Running?: boolean; Paused?: boolean; Pid?: number; Status?: string; ExitCode?: number };
  Config?: { Image?: string; User?: string; Labels?: Record<string, string> | null };
  HostConfig?: {
    NetworkMode?: string;
    Privileged?: boolean;
    PidMode?: string;
    IpcMode?: string;
    UTSMode?: string;
    ReadonlyRootfs?: boolean;
    CapAdd?: string[] | null;
  };
  Mounts?: Array<{ Type?: string; Source?: string; Destination?: string; RW?: boolean }> | null;
  NetworkSettings?: {
    SandboxKey?: string;
    IPAddress?: string;
    Networks?: Record<string, { IPAddress?: string } | null> | null;
  };
}

/** How the container is attached: decides where its traffic can be intercepted. */
export type DockerNetworkMode = 'host' | 'bridge' | 'none' | 'container' | 'other';

/** A risk in how the container was started, and the `docker run` option that removes it. */
export interface PostureFlag {
  /** Stable identifier, e.g. "host-network", "root-user", "host-path-writable". */
  flag: string;
  /** What to change, naming the docker option. */
  fix: string;
}

/** Everything Tessera reads from one inspect answer. */
export interface ExtractedContainer {
  /** Full 64-hex container ID. */
  id: string;
  /** Container name without Docker's leading '/'. */
  name: string;
  /** Host PID of the container's PID 1; 0 when it is not running. */
  pid: number;
  running: boolean;
  paused: boolean;
  /** Valid user labels (container labels merged over image labels), canonical. */
  labels: string[];
  /** Labels that could not be used, each with the reason (reserved '@' key, bad key, too long). */
  warnings: string[];
  /** '@sys:...' labels the monitor vouches for; canonical. */
  systemLabels: string[];
  networkMode: DockerNetworkMode;
  /** The engine's network name: "host", "bridge", "none", a user network, or "container". */
  networkName: string;
  /** For networkMode 'container': the ID (or name) of the container whose netns this one shares. */
  netnsOf?: string;
  /** The container's IPv4 address on its network (bridge and user networks), if any. */
  ip?: string;
  /** Every network the container is attached to, with its IPv4 address. */
  addresses: Array<{ network: string; ip: string }>;
  /** Path of the container's network namespace (NetworkSettings.SandboxKey), if any. */
  netnsPath?: string;
  posture: PostureFlag[];
}

/** Prefix of the system labels this monitor adds. */
export const SYSTEM_LABEL_PREFIX = '@sys:';

/**
 * Host paths whose write access (or, for the Docker socket, any access) gives a container
 * control of the host. A mount is flagged when its source is one of these, lies under one
 * of them, or contains one (mounting /var exposes /var/run/docker.sock).
 */
export const SENSITIVE_HOST_PATHS: readonly string[] = Object.freeze([
  '/',
  '/etc',
  '/proc',
  '/sys',
  '/dev',
  '/boot',
  '/root',
  '/lib/modules',
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/var/lib/docker',
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/run/containerd',
  '/var/run/containerd',
]);

const DOCKER_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'];
/** Capabilities that let a process rewrite the iptables rules of its own network namespace. */
const NET_ADMIN_CAPS = new Set(['NET_ADMIN', 'CAP_NET_ADMIN', 'SYS_ADMIN', 'CAP_SYS_ADMIN', 'ALL']);

function normPath(p: string): string {
  const trimmed = p.replace(/\/+/g, '/').replace(/\/$/, '');
  return trimmed === '' ? '/' : trimmed;
}

function isUnder(path: string, dir: string): boolean {
  return dir === '/' ? true : path === dir || path.startsWith(`${dir}/`);
}

function sensitiveMatch(source: string): string | undefined {
  const src = normPath(source);
  for (const s of SENSITIVE_HOST_PATHS) {
    // "/" itself only matches exactly (everything is under it); any source that is a parent
    // of a sensitive path (e.g. /var/run) or inside one (e.g. /etc/nginx) matches.
    if (s === '/' ? src === '/' : isUnder(src, s) || isUnder(s, src)) return s;
  }
  return undefined;
}

function isRootUser(user: string | undefined): boolean {
  // Empty means the image's default, which for our images and most others is root.
  const u = (user ?? '').trim();
  if (u === '') return true;
  const name = u.split(':')[0]!;
  return name === 'root' || name === '0';
}

function networkOf(mode: string | undefined): { networkMode: DockerNetworkMode; networkName: string; netnsOf?: string } {
  const m = mode ?? '';
  if (m === 'host') return { networkMode: 'host', networkName: 'host' };
  if (m === 'none') return { networkMode: 'none', networkName: 'none' };
  if (m === '' || m === 'default' || m === 'bridge') return { networkMode: 'bridge', networkName: 'bridge' };
  if (m.startsWith('container:')) return { networkMode: 'container', networkName: 'container', netnsOf: m.slice('container:'.length) };
  return { networkMode: 'other', networkName: m };
}

/** The posture flags of one container, each naming the docker option that fixes it. */
export function postureOf(inspect: InspectLike): PostureFlag[] {
  const hc = inspect.HostConfig ?? {};
  const flags: PostureFlag[] = [];
  if (hc.NetworkMode === 'host') {
    flags.push({ flag: 'host-network', fix: 'run it with --network bridge (or a user network) and publish only the ports it serves' });
  }
  if (isRootUser(inspect.Config?.User)) {
    flags.push({ flag: 'root-user', fix: 'run it with --user UID:GID (a non-zero UID)' });
  }
  if (hc.Privileged === true) {
    flags.push({ flag: 'privileged', fix: 'drop --privileged; add only the capabilities it needs with --cap-add' });
  } else if ((hc.CapAdd ?? []).some((c) => NET_ADMIN_CAPS.has(c.toUpperCase()))) {
    // With NET_ADMIN a container can rewrite the iptables rules of its own namespace, which is
    // where Tessera intercepts bridge containers.
    const caps = (hc.CapAdd ?? []).filter((c) => NET_ADMIN_CAPS.has(c.toUpperCase())).join(', ');
    flags.push({ flag: 'net-admin', fix: `drop --cap-add ${caps}: it lets the container change its own firewall rules` });
  }
  if (hc.PidMode === 'host') flags.push({ flag: 'host-pid', fix: 'drop --pid=host' });
  if (hc.IpcMode === 'host') flags.push({ flag: 'host-ipc', fix: 'drop --ipc=host' });
  if (hc.UTSMode === 'host') flags.push({ flag: 'host-uts', fix: 'drop --uts=host' });
  for (const m of inspect.Mounts ?? []) {
    if (m.Type !== 'bind' || !m.Source) continue;
    const src = normPath(m.Source);
    const dest = m.Destination ?? '?';
    if (DOCKER_SOCKETS.some((s) => isUnder(s, src))) {
      // A read-only mount does not help: connect() on a socket ignores the mount's ro flag.
      const what = DOCKER_SOCKETS.includes(src) ? 'the Docker socket gives' : 'it exposes the Docker socket, which gives';
      flags.push({ flag: 'docker-socket', fix: `drop -v ${m.Source}:${dest}: ${what} full control of the host, read-only or not` });
      // ":ro" would be no fix for the socket itself; a directory holding it is also writable.
      if (DOCKER_SOCKETS.includes(src)) continue;
    }
    if (m.RW !== false && sensitiveMatch(src) !== undefined) {
      flags.push({ flag: 'host-path-writable', fix: `mount ${m.Source} read-only (-v ${m.Source}:${dest}:ro) or drop it` });
    }
  }
  if (hc.ReadonlyRootfs !== true) {
    flags.push({ flag: 'writable-rootfs', fix: 'run it with --read-only (add --tmpfs /tmp for scratch space)' });
  }
  return flags;
}

function systemLabel(key: string, value: string, warnings: string[]): string | undefined {
  const text = `${SYSTEM_LABEL_PREFIX}${key}=${value}`;
  try {
    parseLabel(text);
    return text;
  } catch (err) {
    warnings.push(`system label ${SYSTEM_LABEL_PREFIX}${key} left out: ${errorMessage(err)}`);
    return undefined;
  }
}

/** Extracts a container's identity, attachment and posture from its inspect answer. */
export function puFromInspect(inspect: InspectLike): ExtractedContainer {
  const id = inspect.Id ?? '';
  const name = (inspect.Name ?? '').replace(/^\//, '') || id.slice(0, 12);
  const state = inspect.State ?? {};
  const running = state.Running === true;
  const warnings: string[] = [];

  // User labels: Config.Labels already merges image labels with `docker run -l` (the latter
  // wins). A label the identity rules refuse is dropped, never trimmed or rewritten: a
  // changed label would be a different identity.
  const user: string[] = [];
  const raw = inspect.Config?.Labels ?? {};
  for (const key of Object.keys(raw).sort()) {
    const text = `${key}=${raw[key] ?? ''}`;
    try {
      parseUserLabel(text);
      user.push(text);
    } catch (err) {
      warnings.push(`label ${JSON.stringify(key)} dropped: ${errorMessage(err)}`);
    }
  }

  const net = networkOf(inspect.HostConfig?.NetworkMode);
  const addresses: Array<{ network: string; ip: string }> = [];
  for (const [network, ep] of Object.entries(inspect.NetworkSettings?.Networks ?? {})) {
    if (ep?.IPAddress) addresses.push({ network, ip: ep.IPAddress });
  }
  let ip: string | undefined;
  if (net.networkMode === 'bridge' || net.networkMode === 'other') {
    ip = addresses.find((a) => a.network === net.networkName)?.ip ?? addresses[0]?.ip ?? (inspect.NetworkSettings?.IPAddress || undefined);
  }

  const system = [
    systemLabel('image', inspect.Config?.Image ?? '', warnings),
    systemLabel('name', name, warnings),
    systemLabel('network', net.networkName, warnings),
  ].filter((l): l is string => l !== undefined);

  const out: ExtractedContainer = {
    id,
    name,
    pid: running && typeof state.Pid === 'number' ? state.Pid : 0,
    running,
    paused: state.Paused === true,
    labels: [...canonicalLabels(user)],
    warnings,
    systemLabels: [...canonicalLabels(system)],
    networkMode: net.networkMode,
    networkName: net.networkName,
    addresses,
    posture: postureOf(inspect),
  };
  if (net.netnsOf !== undefined) out.netnsOf = net.netnsOf;
  if (ip !== undefined) out.ip = ip;
  // A stopped container keeps its last SandboxKey, but the namespace is gone.
  const sandbox = inspect.NetworkSettings?.SandboxKey;
  if (sandbox && running) out.netnsPath = sandbox;
  return out;
}
