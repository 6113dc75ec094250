// One etcd member in a namespace host of a test cluster, and the fleet's operator key, as the
// fleet integration tests set them up: the member listens on the host's address (client and
// peer port given by the test: each file has its own), a host's CLI makes the operator key
// pair and waits until `tessera cluster status` reaches the store. stop() ends the member by
// its PID (SIGKILL) and waits for it; it is safe to call twice and after the member died.

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { waitFor, type TesseraHost } from '../../scripts/lib/cluster.js';
import type { NsHost } from '../../scripts/lib/netns.js';
import { ETCD_BIN } from '../integration/fleet-etcd.js';

export interface FleetStore {
  /** etcd://ADDR:CLIENT_PORT, for --cluster. */
  readonly url: string;
  readonly proc: ChildProcess;
  /** The operator's key pair (`tessera cluster keygen --out DIR/op`). */
  readonly operatorKey: string;
  readonly operatorPub: string;
  /** The daemon flags of a host that follows this store. */
  readonly daemonArgs: string[];
  stop(): Promise<void>;
}

/** SIGKILL a process this test started (by its PID) and wait for its exit; nothing when it already ended. */
export async function sigkillAndWait(proc: ChildProcess | null | undefined): Promise<void> {
  if (!proc || proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  process.kill(proc.pid, 'SIGKILL');
  await gone;
}

/**
 * Start etcd in `host` (data under `dir`/etcd), make the operator key with `cli`'s CLI, and
 * wait until the store answers `cli`. Throws when etcd is not installed; the member is
 * stopped when it does not answer in 30 s.
 */
export async function startFleetStore(o: { host: NsHost; cli: TesseraHost; dir: string; clientPort: number; peerPort: number }): Promise<FleetStore> {
  if (!ETCD_BIN) throw new Error('etcd is not installed (scripts/setup.sh installs etcd-server)');
  const { addr, name } = o.host;
  const url = `etcd://${addr}:${o.clientPort}`;
  const proc = o.host.spawn([
    ETCD_BIN,
    `--name=${name}`,
    `--data-dir=${join(o.dir, 'etcd')}`,
    `--listen-client-urls=http://${addr}:${o.clientPort}`,
    `--advertise-client-urls=http://${addr}:${o.clientPort}`,
    `--listen-peer-urls=http://${addr}:${o.peerPort}`,
    `--initial-advertise-peer-urls=http://${addr}:${o.peerPort}`,
    `--initial-cluster=${name}=http://${addr}:${o.peerPort}`,
    '--log-level=warn',
    '--logger=zap',
  ]);
  const stop = (): Promise<void> => sigkillAndWait(proc);
  try {
    const key = await o.cli.tessera(['cluster', 'keygen', '--out', join(o.dir, 'op')]);
    if (key.code !== 0) throw new Error(`tessera cluster keygen failed: ${key.stderr}`);
    await waitFor(`etcd in host ${name}`, async () => (await o.cli.tessera(['cluster', 'status', '--cluster', url, '--json'])).code === 0, 30_000, 300);
  } catch (err) {
    await stop();
    throw err;
  }
  const operatorPub = join(o.dir, 'op.pub.json');
  return { url, proc, operatorKey: join(o.dir, 'op.key.json'), operatorPub, daemonArgs: ['--cluster', url, '--operator-pub', operatorPub], stop };
}
