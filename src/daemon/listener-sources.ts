// Where listener discovery (discovery.ts) reads listening sockets from: one `ss --cgroup` dump
// per tick that names each socket's cgroup v2 (until ss proves unable, then never again), and,
// for PUs without a cgroup v2, their processes' descriptors against the addon's sock_diag dump
// of listening sockets (else /proc/net/tcp{,6}).

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { CommandRunner } from '../rules/index.js';
import { createListenerSource, listeningPortsAsync, parseSsListeners, SS_LISTENERS, type ListenerDump } from '../monitors/process/index.js';
import { loadNative } from '../datapath/native.js';
import type { DiscoveredPu, ListenerDiscoveryDeps } from './discovery.js';

function nativeListenerDump(): ListenerDump | null {
  try {
    const native = loadNative();
    return typeof native.listeningSockets === 'function' ? native.listeningSockets : null;
  } catch {
    return null;
  }
}

export function createListenerSources(runner: CommandRunner, log: Pick<Logger, 'warn'>): Pick<ListenerDiscoveryDeps<DiscoveredPu>, 'listeners' | 'portsOfPids'> {
  const listenerSockets = createListenerSource(nativeListenerDump(), (err) =>
    log.warn({ err: errorMessage(err) }, 'sock_diag refused the listening-socket dump; reading /proc/net/tcp{,6} instead (slower with many sockets)'),
  );
  let cgroupDump = true;
  return {
    async listeners() {
      if (!cgroupDump) return null;
      const parsed = await runner
        .run(SS_LISTENERS, { timeoutMs: 10_000 })
        .then((r) => parseSsListeners(r.stdout))
        .catch((err: unknown) => {
          log.warn({ err: errorMessage(err) }, "ss --cgroup is not available: ports are read from each PU's processes (install iproute2 5.8 or later)");
          return null;
        });
      if (parsed === null) cgroupDump = false;
      return parsed;
    },
    portsOfPids: (pids) => listeningPortsAsync(pids, listenerSockets()),
  };
}
