// The queue glue of the UDP exchange: a worker hands every queued packet here first; a UDP one
// is decided by the pure exchange (exchange.ts), its verdict given, and the control packets it
// asks for sent with the raw sender. Everything else is left to the TCP handshake.

import type { NativeQueue } from '../native.js';
import type { FlowRecord } from '../../flow.js';
import type { Policy } from '../../policy/index.js';
import type { HandshakeCrypto, LocalPu } from '../handshake/types.js';
import { createUdpExchange, type UdpOptions, type UdpStats } from './exchange.js';
import type { HelloProofDeps } from './hello-proof.js';
import { isUdp } from './packet.js';
import { createUdpSender } from './sender.js';

export interface UdpPathStats extends UdpStats {
  sent: number;
  sendErrors: number;
}

export interface UdpPath {
  /** Decide the packet if it is UDP (true: its verdict is given); false: not UDP, not ours. */
  take(queue: NativeQueue, id: number, data: Buffer, off: number, len: number, hook: number, mark: number, out: Uint8Array): boolean;
  stats(): UdpPathStats;
  /** Closes the raw sockets (a container namespace's: they keep it alive). */
  close(): void;
}

export function createUdpPath(deps: {
  crypto: HandshakeCrypto;
  policy: () => Policy;
  puByIndex(i: number): LocalPu | undefined;
  onFlow(r: FlowRecord): void;
  /** Protocol v2's host keys, epoch and strike register, for the Hello's proof. */
  proof?: HelloProofDeps;
  options?: Partial<UdpOptions>;
  /** A container namespace's path sends from inside it. */
  netns?: string;
}): UdpPath {
  // TESSERA_UDP_FIRST=drop: the design alternative bench/udp.ts measures (docs/performance.md).
  const first = process.env.TESSERA_UDP_FIRST === 'drop' ? { first: 'drop' as const } : {};
  const exchange = createUdpExchange({ ...deps, options: { ...deps.options, ...first }, now: Date.now });
  // A container namespace's queue sends from inside that namespace (udp/sender.ts).
  const sender = createUdpSender((m) => console.error(`tessera worker: ${m}`), deps.netns ? { netns: deps.netns } : {});
  let errors = 0;
  return {
    take(queue, id, data, off, len, hook, mark, out) {
      const view = new Uint8Array(data.buffer, data.byteOffset + off, len);
      if (!isUdp(view)) return false;
      try {
        const d = exchange.handle(view, hook, mark, out);
        if (d.length > 0) queue.verdict(id, d.verdict, d.mark, out, d.length);
        else queue.verdict(id, d.verdict, d.mark);
        if (d.emit.length > 0) {
          // Our verdict first (it authorizes the flow here), then what it answers: the peer's
          // next datagram must not overtake a verdict still waiting in the batch.
          queue.flush();
          for (const p of d.emit) sender.send(p);
        }
      } catch (err) {
        // A bug must not wedge the queue: refuse the datagram and keep going.
        errors++;
        queue.verdict(id, 0);
        if (errors <= 10 || errors % 1000 === 0) console.error(`tessera worker: UDP handler error: ${(err as Error).message}`);
      }
      return true;
    },
    stats: () => ({ ...exchange.stats(), sent: sender.sent, sendErrors: sender.errors }),
    close: () => sender.close(),
  };
}
