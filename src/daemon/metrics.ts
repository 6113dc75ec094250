// GET /metrics: the daemon's Prometheus text, from the workers' stats and its counters.

import { HANDLING_BUCKETS_US, type Datapath } from '../datapath/index.js';

export function metricsText(stats: ReturnType<Datapath['stats']>, puCount: number, counters: Record<string, number>): string {
  const lines: string[] = [];
  lines.push('# HELP tessera_packets_total Packets read from NFQUEUE per queue.', '# TYPE tessera_packets_total counter');
  for (const s of stats) lines.push(`tessera_packets_total{queue="${s.queueNum}"} ${s.queue.received}`);
  lines.push('# HELP tessera_queue_enobufs_total Times the kernel dropped queued packets because the socket buffer was full.', '# TYPE tessera_queue_enobufs_total counter');
  for (const s of stats) lines.push(`tessera_queue_enobufs_total{queue="${s.queueNum}"} ${s.queue.enobufs}`);
  lines.push('# HELP tessera_verdicts_total Handshake packets per outcome and reason.', '# TYPE tessera_verdicts_total counter');
  for (const s of stats) {
    if (!s.handshake) continue;
    lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="accept"} ${s.handshake.accepted}`);
    lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="pass"} ${s.handshake.passed ?? 0}`);
    lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="reject"} ${s.handshake.rejected}`);
    lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="drop"} ${s.handshake.dropped}`);
    for (const [reason, n] of Object.entries(s.handshake.byReason)) lines.push(`tessera_reasons_total{queue="${s.queueNum}",reason="${reason}"} ${n}`);
  }
  lines.push('# HELP tessera_cache_hits_total Token verifications and X25519 agreements served from cache.', '# TYPE tessera_cache_hits_total counter');
  lines.push('# HELP tessera_cache_misses_total Token verifications and X25519 agreements computed.', '# TYPE tessera_cache_misses_total counter');
  for (const s of stats) {
    if (!s.caches) continue;
    lines.push(`tessera_cache_hits_total{queue="${s.queueNum}",cache="token"} ${s.caches.tokenHits}`, `tessera_cache_misses_total{queue="${s.queueNum}",cache="token"} ${s.caches.tokenMisses}`);
    lines.push(`tessera_cache_hits_total{queue="${s.queueNum}",cache="x25519"} ${s.caches.x25519Hits}`, `tessera_cache_misses_total{queue="${s.queueNum}",cache="x25519"} ${s.caches.x25519Misses}`);
  }
  lines.push('# HELP tessera_packet_handling_seconds Time to decide one queued packet in a worker.', '# TYPE tessera_packet_handling_seconds histogram');
  for (const s of stats) {
    let cumulative = 0;
    HANDLING_BUCKETS_US.forEach((le, i) => {
      cumulative += s.handling.buckets[i] ?? 0;
      lines.push(`tessera_packet_handling_seconds_bucket{queue="${s.queueNum}",le="${le / 1e6}"} ${cumulative}`);
    });
    lines.push(`tessera_packet_handling_seconds_bucket{queue="${s.queueNum}",le="+Inf"} ${s.handling.count}`);
    lines.push(`tessera_packet_handling_seconds_sum{queue="${s.queueNum}"} ${s.handling.sumUs / 1e6}`, `tessera_packet_handling_seconds_count{queue="${s.queueNum}"} ${s.handling.count}`);
  }
  lines.push('# HELP tessera_handshake_state Per-flow handshake entries held by each worker (bounded).', '# TYPE tessera_handshake_state gauge');
  for (const s of stats) {
    if (!s.handshake) continue;
    lines.push(`tessera_handshake_state{queue="${s.queueNum}",map="server"} ${s.handshake.serverState}`, `tessera_handshake_state{queue="${s.queueNum}",map="client"} ${s.handshake.clientState}`);
  }
  lines.push('# HELP tessera_pus Protected processing units.', '# TYPE tessera_pus gauge', `tessera_pus ${puCount}`);
  for (const [k, v] of Object.entries(counters)) lines.push(`tessera_${k} ${v}`);
  return lines.join('\n') + '\n';
}
