// The Docker setup shared by the integration tests that run a tessera daemon next to a real
// engine (scripts/docker-setup.sh: dockerd in netns tessera-docker, which is "the host"):
// whether the engine is there (and the visible skip when it is not), the docker CLI, the
// local test image, a cluster whose docker host is that namespace, and a teardown that
// removes every container the test started by ID, also when the test failed.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createCluster, existingNsHost, type Cluster, type ClusterOptions } from '../../scripts/lib/cluster.js';
import { isRoot } from '../../scripts/lib/netns.js';
import { skipBecause } from './skip.js';

export const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
/** Built by scripts/docker-image.sh (busybox, label org.tessera.image=busybox). */
export const IMAGE = 'tessera/busybox:local';
export const NETNS = process.env.TESSERA_DOCKER_NETNS ?? 'tessera-docker';
/** The docker namespace's address on the default bridge (scripts/docker-setup.sh). */
export const BRIDGE_ADDR = '10.213.200.1';
export const dockerAvailable = isRoot && existsSync(`/run/netns/${NETNS}`) && spawnSync(DOCKER, ['info'], { timeout: 15_000, stdio: 'ignore' }).status === 0;

/** The visible reasons a Docker suite does not run here: no root, or no dockerd in its namespace. */
export function skipWithoutDocker(what: string): void {
  skipBecause(!isRoot, `${what} (needs root)`, 'integration tests need root: run as root');
  skipBecause(isRoot && !dockerAvailable, `${what} (needs dockerd)`, `dockerd not running in netns ${NETNS}: run scripts/docker-setup.sh (CI does)`);
}

/** Run the docker CLI; throws on a non-zero status. Returns stdout, trimmed. */
export function docker(...args: string[]): string {
  return execFileSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

/** Run the docker CLI and return what happened, whatever the status. */
export function dockerTry(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * Build the test image, then a cluster (PSK trust) whose host "docker" is the engine's
 * namespace. `dockerArgs` go to that host's daemon only: two daemons following one engine
 * would both claim its containers.
 */
export async function createDockerCluster(o: Pick<ClusterOptions, 'prefix' | 'subnet' | 'daemonArgs'> & { hosts?: string[]; dockerArgs?: string[] }): Promise<Cluster> {
  execFileSync('bash', ['scripts/docker-image.sh'], { stdio: 'inherit', timeout: 120_000 });
  return createCluster({
    prefix: o.prefix,
    hosts: o.hosts ?? [],
    subnet: o.subnet,
    trust: 'psk',
    extraHosts: [existingNsHost('docker', NETNS, BRIDGE_ADDR)],
    ...(o.daemonArgs ? { daemonArgs: o.daemonArgs } : {}),
    hostDaemonArgs: { docker: ['--docker', '/var/run/docker.sock', ...(o.dockerArgs ?? [])] },
  });
}

/** Remove the test's containers by ID, then destroy its cluster and its temp dir, whatever fails first. */
export async function dockerTeardown(o: { containers: Iterable<string>; cluster?: Cluster | undefined; dir?: string | undefined }): Promise<void> {
  try {
    const ids = [...o.containers];
    if (ids.length) spawnSync(DOCKER, ['rm', '-f', ...ids], { stdio: 'ignore', timeout: 60_000 });
  } finally {
    await o.cluster?.destroy();
    if (o.dir) rmSync(o.dir, { recursive: true, force: true });
  }
}
