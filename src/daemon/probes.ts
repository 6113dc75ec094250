// --metrics-listen: the TCP server of /metrics, /healthz and /readyz (src/api/metrics-server.ts)
// over the metrics and health services, with one line saying where it listens.

import type { Logger } from 'pino';
import { isLoopback, startMetricsServer, type ListenAddress, type MetricsServer } from '../api/index.js';
import type { HealthService } from './health.js';
import type { Metrics } from './metrics.js';

export async function serveProbes(listen: ListenAddress, metrics: Pick<Metrics, 'text'>, health: Pick<HealthService, 'readiness'>, log: Logger): Promise<MetricsServer> {
  const server = await startMetricsServer(listen, { metrics: () => metrics.text(), readiness: () => health.readiness() });
  const at = `${server.address.host}:${server.address.port}`;
  if (isLoopback(server.address.host)) log.info({ listen: at }, 'metrics and health probes on TCP');
  else log.warn({ listen: at }, 'metrics and health probes on a non-loopback address: whoever reaches it reads PU counts and refusal reasons');
  return server;
}
