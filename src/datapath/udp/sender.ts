// Sends the UDP exchange's control packets (complete IP packets the pure exchange built) from
// a worker, with raw sockets of protocol IPPROTO_RAW: send-only (nothing is ever received on
// them), the IP header ours (IPv4: IP_HDRINCL is implied; IPv6: IPV6_HDRINCL). The packets
// leave from no PU's socket, so our egress rules call them the host's own.
//
// The sockets are the addon's (rawSocket, native/src/raw.c). The npm raw-socket module is only
// the fallback for an addon built without rawSocket: it loads in ONE worker thread of a process
// ("Module did not self-register" in the next), so with --queues 2+ the flows balanced to the
// other workers stayed refused. Without either, every PU's UDP flow stays refused (fail closed),
// with one log line.
//
// In a container's own network namespace (`netns`), the addon makes them inside that namespace:
// the Reply and Confirm of a bridge container leave from its address, through its conntrack and
// routes, as its datagrams do. They carry UDP_CONTROL (SO_MARK), by which the namespace's rules
// tell them from the container's own. The host's carry no mark: our host rules never match the
// host's own packets, and these leave from no PU's socket.

import { createRequire } from 'node:module';
import { loadNative } from '../native.js';
import { UDP_CONTROL } from '../../marks.js';

const IPPROTO_RAW = 255;
const IPV6_HDRINCL = 36;

interface RawWrap {
  send(buf: Buffer, offset: number, length: number, address: string, cb: (bytes: number) => void): void;
}
interface RawSocket {
  wrap: RawWrap;
  pauseRecv(): void;
  setOption(level: number, option: number, value: Buffer, length: number): void;
  on(ev: 'error', f: (err: Error) => void): void;
  close(): void;
}

export interface UdpSender {
  /** Send one packet; false when it could not be (no raw socket, a send error). */
  send(packet: Uint8Array): boolean;
  readonly sent: number;
  readonly errors: number;
  close(): void;
}

function addressOf(p: Uint8Array): string {
  if (p[0]! >> 4 === 4) return `${p[16]}.${p[17]}.${p[18]}.${p[19]}`;
  const g: string[] = [];
  for (let i = 24; i < 40; i += 2) g.push(((p[i]! << 8) | p[i + 1]!).toString(16));
  return g.join(':');
}

export interface UdpSenderOptions {
  /** A container's network namespace file: send from inside it (the addon's raw sockets). */
  netns?: string;
}

/** Whether the loaded addon can make raw sockets (an older build cannot). */
function nativeRaw(): boolean {
  const n = loadNative();
  return !!(n.rawSocket && n.rawSend && n.rawClose);
}

/** Raw sockets of the addon, made in `netns` (marked UDP_CONTROL) or in this thread's namespace, shaped as raw-socket's (send only). IPv6: null when the namespace has none. */
function nativeSockets(netns: string | undefined): { v4: RawSocket; v6: RawSocket | null } {
  const { rawSocket, rawSend, rawClose } = loadNative();
  if (!rawSocket || !rawSend || !rawClose) throw new Error('the addon has no rawSocket (rebuild it: npm rebuild)');
  const wrap = (fd: number): RawSocket => ({
    wrap: {
      send(buf, offset, length) {
        const n = rawSend(fd, offset === 0 ? buf : buf.subarray(offset), length);
        if (n < 0) throw new Error(`sendto: errno ${-n}`);
      },
    },
    pauseRecv: () => undefined,
    setOption: () => undefined,
    on: () => undefined,
    close: () => rawClose(fd),
  });
  const v4 = wrap(netns ? rawSocket(4, netns, UDP_CONTROL) : rawSocket(4));
  let v6: RawSocket | null = null;
  try {
    v6 = wrap(netns ? rawSocket(6, netns, UDP_CONTROL) : rawSocket(6));
  } catch {
    v6 = null;
  }
  return { v4, v6 };
}

function hostSockets(onError: () => void): { v4: RawSocket; v6: RawSocket | null } {
  const raw = createRequire(import.meta.url)('raw-socket') as {
    createSocket(o: { protocol: number; addressFamily: number }): RawSocket;
    AddressFamily: { IPv4: number; IPv6: number };
    SocketLevel: { IPPROTO_IPV6: number };
  };
  const v4 = raw.createSocket({ protocol: IPPROTO_RAW, addressFamily: raw.AddressFamily.IPv4 });
  v4.pauseRecv();
  v4.on('error', onError);
  let v6: RawSocket | null = null;
  try {
    v6 = raw.createSocket({ protocol: IPPROTO_RAW, addressFamily: raw.AddressFamily.IPv6 });
    v6.pauseRecv();
    v6.setOption(raw.SocketLevel.IPPROTO_IPV6, IPV6_HDRINCL, Buffer.from([1, 0, 0, 0]), 4);
    v6.on('error', onError);
  } catch {
    v6 = null; // a kernel without IPv6
  }
  return { v4, v6 };
}

export function createUdpSender(log: (message: string) => void, opts: UdpSenderOptions = {}): UdpSender {
  let v4: RawSocket | null = null;
  let v6: RawSocket | null = null;
  let sent = 0;
  let errors = 0;
  let warned = false;
  try {
    ({ v4, v6 } = opts.netns || nativeRaw() ? nativeSockets(opts.netns) : hostSockets(() => errors++));
  } catch (err) {
    const where = opts.netns ? `in ${opts.netns}` : 'raw-socket';
    log(`UDP exchange cannot send control packets (${where}: ${(err as Error).message}); UDP flows of ${opts.netns ? 'this container' : 'PUs'} stay refused`);
    warned = true;
  }
  return {
    send(packet) {
      const s = packet[0]! >> 4 === 4 ? v4 : v6;
      if (!s) {
        errors++;
        if (!warned) {
          warned = true;
          log('UDP exchange: no raw socket for this address family; UDP flows of PUs stay refused');
        }
        return false;
      }
      try {
        const b = Buffer.from(packet.buffer, packet.byteOffset, packet.length);
        // Synchronous sendto: an error throws; the callback only gets the byte count.
        s.wrap.send(b, 0, b.length, addressOf(packet), () => undefined);
        sent++;
        return true;
      } catch {
        errors++;
        return false;
      }
    },
    get sent() {
      return sent;
    },
    get errors() {
      return errors;
    },
    close() {
      v4?.close();
      v6?.close();
      v4 = v6 = null;
    },
  };
}
