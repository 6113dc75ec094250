// Enrollment of a container by the OCI runtime shim (packaging/tessera-runc, docs/docker.md):
// between `runc create` and `runc start` the shim names the container (ID, init PID, bundle)
// and the daemon makes it a PU before answering. What the daemon may read then, and what it
// must not: the bundle's config.json and /proc/PID are fine; the Docker API is not (the engine
// holds the container during the runtime call: an inspect would deadlock until a timeout).
// Identity comes from the engine's `create` event, which the monitor already received.

import { readFile, rename, stat, writeFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TesseraError, errorMessage } from '../errors.js';
import { puFromInspect, netClsCgroupOf, type CreatedContainer, type DockerPu } from '../monitors/docker/index.js';

/** Where a `--docker` daemon names its socket for the shim (overridable for tests and packagers). */
export const RUNTIME_FILE_DEFAULT = '/run/tessera/docker-runtime';

export function runtimeFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.TESSERA_RUNTIME_FILE || RUNTIME_FILE_DEFAULT;
}

/**
 * Tell the shim which socket enrolls this engine's containers. Kept when the daemon stops:
 * while it is down (restart, upgrade, crash) the shim finds no answer and refuses to start
 * containers, instead of letting them run unprotected. Another live daemon's file is
 * overwritten with a warning by the caller (one `--docker` daemon per engine).
 */
export async function writeRuntimeFile(path: string, socket: string): Promise<string | undefined> {
  let previous: string | undefined;
  try {
    previous = /^socket=(.*)$/m.exec(await readFile(path, 'utf8'))?.[1];
  } catch {
    previous = undefined;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeFile(path + '.tmp', `socket=${socket}\n`, { mode: 0o644 });
  await rename(path + '.tmp', path);
  return previous !== socket ? previous : undefined;
}

/** Remove the runtime file if it still names `socket` (tests; an operator uninstalling). */
export async function removeRuntimeFile(path: string, socket: string): Promise<void> {
  const text = await readFile(path, 'utf8').catch(() => '');
  if (text.trim() === `socket=${socket}`) await rm(path, { force: true });
}

export type BundleNetwork = { kind: 'host' } | { kind: 'own' } | { kind: 'shared'; path: string };

/** Which network namespace the OCI spec asks for: none listed = the runtime's (host), no path = a new one, a path = an existing one (the host's or another container's). */
export function networkOfSpec(spec: unknown): BundleNetwork {
  const namespaces = (spec as { linux?: { namespaces?: Array<{ type?: string; path?: string }> } })?.linux?.namespaces;
  if (!Array.isArray(namespaces)) return { kind: 'host' };
  const net = namespaces.find((n) => n?.type === 'network');
  if (!net) return { kind: 'host' };
  return net.path ? { kind: 'shared', path: net.path } : { kind: 'own' };
}

async function nsInode(path: string): Promise<number> {
  return (await stat(path)).ino;
}

export interface EnrollFacts {
  network: BundleNetwork;
  /** The init's net_cls cgroup (host network: our classid goes there). */
  netClsCgroup?: string;
  /** The engine's directory of this container (/var/lib/docker/containers/ID), from the bundle's mounts. */
  containerDir?: string;
}

/** The engine's own directory of the container: the source of its /etc/hostname (or hosts, resolv.conf) mount. */
export function containerDirOfSpec(spec: unknown, id: string): string | undefined {
  const mounts = (spec as { mounts?: Array<{ destination?: string; source?: string }> })?.mounts;
  if (!Array.isArray(mounts)) return undefined;
  for (const m of mounts) {
    if (!['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'].includes(m?.destination ?? '') || !m.source) continue;
    const at = m.source.indexOf(`/containers/${id}/`);
    if (at > 0) return m.source.slice(0, at + `/containers/${id}`.length);
  }
  return undefined;
}

/**
 * What the engine wrote to disk at create (config.v2.json, hostconfig.json): the identity of a
 * container whose `create` event this daemon never saw (created before it started, then
 * `docker start`ed or restarted by a policy), and the network's name. A file read, never an
 * API call. Undefined when unreadable (another engine layout).
 */
export async function readEngineState(dir: string, id: string): Promise<{ created: CreatedContainer; networkMode?: string } | undefined> {
  try {
    const cfg = JSON.parse(await readFile(join(dir, 'config.v2.json'), 'utf8')) as { Name?: string; Config?: { Image?: string; Labels?: Record<string, string> | null } };
    const host = JSON.parse(await readFile(join(dir, 'hostconfig.json'), 'utf8').catch(() => '{}')) as { NetworkMode?: string };
    const created: CreatedContainer = { id, name: (cfg.Name ?? '').replace(/^\//, ''), image: cfg.Config?.Image ?? '', labels: { ...(cfg.Config?.Labels ?? {}) } };
    return { created, ...(host.NetworkMode ? { networkMode: host.NetworkMode } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * What the bundle and /proc say of a created container, checked: the PID is that container's
 * init (its cgroup path names the ID), and a host-network container really shares the
 * daemon's network namespace (else our rules would not see its packets).
 */
export async function readEnrollFacts(o: { id: string; pid: number; bundle: string; procRoot?: string }): Promise<EnrollFacts> {
  const proc = o.procRoot ?? '/proc';
  let spec: unknown;
  try {
    spec = JSON.parse(await readFile(join(o.bundle, 'config.json'), 'utf8'));
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_ENROLL', `container ${o.id.slice(0, 12)}: cannot read ${join(o.bundle, 'config.json')}: ${errorMessage(err)}`, { cause: err });
  }
  let cgroups: string;
  try {
    cgroups = await readFile(`${proc}/${o.pid}/cgroup`, 'utf8');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_ENROLL', `container ${o.id.slice(0, 12)}: init pid ${o.pid} is gone`, { cause: err });
  }
  if (!cgroups.includes(o.id)) throw new TesseraError('TESSERA_ERR_ENROLL', `pid ${o.pid} is not the init of container ${o.id.slice(0, 12)} (its cgroups do not name it)`);
  let network = networkOfSpec(spec);
  // Docker names the host's namespace by a path (/var/run/docker/netns/default), and a
  // `--network container:X` by X's: what counts is whether it is the daemon's own namespace.
  const [theirs, ours] = await Promise.all([nsInode(`${proc}/${o.pid}/ns/net`), nsInode(`${proc}/self/ns/net`)]);
  if (network.kind !== 'own' && theirs === ours) network = { kind: 'host' };
  else if (network.kind === 'host' || (network.kind === 'shared' && !/^\/proc\/\d+\/ns\/net$/.test(network.path))) {
    // No namespace of its own, yet not ours: the host's rules here would never see its packets.
    throw new TesseraError('TESSERA_ERR_ENROLL', `host-network container ${o.id.slice(0, 12)} is not in this daemon's network namespace: run the --docker daemon in dockerd's namespace`);
  }
  const cg = netClsCgroupOf(proc, o.pid);
  const dir = containerDirOfSpec(spec, o.id);
  return { network, ...(cg !== undefined ? { netClsCgroup: cg } : {}), ...(dir ? { containerDir: dir } : {}) };
}

/**
 * The container as a PU candidate before it runs: labels, image and name from the `create`
 * event (or the engine's files), the network from the bundle. `@sys:network` of a container
 * with its own namespace needs the network's name, which only the engine's hostconfig.json
 * holds: without it the label waits for the start's inspect. Posture comes with that inspect.
 */
export function pendingPu(created: CreatedContainer, pid: number, facts: EnrollFacts, networkMode?: string): DockerPu {
  const host = facts.network.kind === 'host';
  const named = !host && networkMode !== undefined && networkMode !== 'host' && !networkMode.startsWith('container:');
  const pu: DockerPu = puFromInspect({
    Id: created.id,
    Name: `/${created.name}`,
    State: { Running: true, Pid: pid },
    Config: { Image: created.image, Labels: created.labels },
    HostConfig: { NetworkMode: host ? 'host' : named ? networkMode : 'bridge' },
  });
  pu.posture = [];
  if (!host) {
    if (!named) {
      pu.systemLabels = pu.systemLabels.filter((l) => !l.startsWith('@sys:network='));
      pu.networkName = '';
    }
    if (pu.networkMode === 'host' || pu.networkMode === 'container') pu.networkMode = 'other';
    pu.netnsPath = `/proc/${pid}/ns/net`;
    delete pu.ip;
  }
  if (facts.netClsCgroup !== undefined) pu.netClsCgroup = facts.netClsCgroup;
  return pu;
}
