// Types of the NFQUEUE addon (native/index.cjs). ESM callers load it with
// createRequire(import.meta.url)('<path>/native/index.cjs') and cast to typeof import('<path>/native/index.js').

/** Verdict values (linux/netfilter.h). REPEAT re-runs the hook, usually with a new mark. */
export declare const VERDICT: Readonly<{ DROP: 0; ACCEPT: 1; REPEAT: 4 }>;

/**
 * Words per packet in Queue.meta. For packet i, meta[i * META_FIELDS + k] is:
 * 0 id, 1 dataOffset (into Queue.data), 2 length (captured bytes), 3 mark, 4 hook
 * (0 PREROUTING .. 4 POSTROUTING), 5 indev ifindex, 6 outdev ifindex (0 = none),
 * 7 hwProtocol in host order (0x0800 IPv4, 0x86dd IPv6).
 */
export declare const META_FIELDS: 8;

export interface QueueOptions {
  /** NFQUEUE number, 0..65535, in the network namespace of the calling process. */
  queueNum: number;
  /** Kernel queue length (NFQA_CFG_QUEUE_MAXLEN); packets beyond it are dropped. Default 4096. */
  maxLen?: number;
  /** Bytes of each packet copied to userspace, 1..65535, or 0 for metadata only. Default 0xffff. */
  copyRange?: number;
  /** Ignored, kept for old callers: the addon never sets NFQA_CFG_F_FAIL_OPEN, so a full queue drops. Fail open with no reader is the rule's --queue-bypass. */
  failOpen?: boolean;
  /** Most packets delivered per onBatch call, 1..1024. Default 64. */
  batchSize?: number;
  /** Socket receive buffer in bytes (SO_RCVBUFFORCE, falling back to SO_RCVBUF); 0 keeps the default. Default 8 MiB. */
  rcvBufBytes?: number;
  /**
   * Path of a network namespace file (e.g. /var/run/docker/netns/<id>). The calling thread
   * enters it (setns CLONE_NEWNET) only to create and bind the socket, then returns; the
   * queue then receives that namespace's packets. The socket keeps the namespace alive
   * until close(). Needs CAP_SYS_ADMIN.
   */
  netns?: string;
}

export interface QueueStats {
  /** Packet messages received. */
  received: number;
  /** Verdicts handed to the kernel. */
  verdicts: number;
  /** Verdicts the kernel refused (e.g. unknown id) or that could not be sent. */
  sendErrors: number;
  /** Malformed or truncated messages, and receive errors other than ENOBUFS. */
  recvErrors: number;
  /** Receive-buffer overruns reported by the socket. */
  enobufs: number;
  /** onBatch calls. */
  batches: number;
}

/**
 * One NFQUEUE consumer, owned by the thread that created it (polled on that thread's event
 * loop). Closed by close(), or when its worker/env exits.
 */
export declare class Queue {
  /**
   * Binds and configures the queue. Throws TypeError (code TESSERA_ERR_INVALID_ARGUMENT) for
   * bad arguments and Error (code TESSERA_ERR_QUEUE, errno set) when the kernel refuses.
   * onBatch(count) runs once per wakeup with count >= 1 packets described in meta.
   */
  constructor(options: QueueOptions, onBatch: (this: Queue, count: number) => void);
  /** batchSize * META_FIELDS words, rewritten before every onBatch call. */
  readonly meta: Uint32Array;
  /** The receive buffer; packet bytes are data.subarray(off, off + len), valid only during onBatch. */
  readonly data: Buffer;
  /**
   * Queues a verdict. Inside onBatch it is sent with the batch's other verdicts after onBatch
   * returns; outside onBatch it is sent at once. mark omitted or -1 keeps the packet's mark.
   * payload (first payloadLength bytes, default all) replaces the packet; it may be a
   * subarray of data edited in place.
   */
  verdict(id: number, verdict: number, mark?: number, payload?: Uint8Array, payloadLength?: number): void;
  /** Sends queued verdicts now. */
  flush(): void;
  /** Flushes, unbinds, closes the socket and stops polling. Idempotent. */
  close(): void;
  stats(): QueueStats;
}

/** out[0..32) = SHA-256(data), with the OpenSSL inside the node binary. Throws TypeError on bad arguments. */
export declare function sha256(data: Uint8Array, out: Uint8Array): void;
/** out[0..32) = HMAC-SHA256(key, data) (RFC 2104). Throws TypeError on bad arguments. */
export declare function hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void;
/** Bytes of a prepared HMAC-SHA256 key state (hmacPrepare). */
export declare const hmacStateBytes: number;
/** state[0..hmacStateBytes) = the key's HMAC-SHA256 state after its two pad blocks (done once per key). */
export declare function hmacPrepare(key: Uint8Array, state: Uint8Array): void;
/** out[0..32) = HMAC-SHA256(key, data) for the key hmacPrepare wrote into state: two fewer compressions per call. */
export declare function hmacPrepared(state: Uint8Array, data: Uint8Array, out: Uint8Array): void;
/**
 * Every TCP socket in LISTEN state in the calling thread's network namespace, IPv4 then
 * IPv6, as a flat array [inode, port, inode, port, ...] (port in host order). Synchronous:
 * opens a NETLINK_SOCK_DIAG socket, dumps SOCK_DIAG_BY_FAMILY with idiag_states = LISTEN for
 * AF_INET and AF_INET6 (the kernel walks only its listening hash, not the TIME_WAIT-laden
 * established one), closes the socket. Needs no privilege. Throws Error (code
 * TESSERA_ERR_SOCK_DIAG, errno set) when the kernel refuses.
 */
export declare function listeningSockets(): Uint32Array;
/**
 * The same dump with each socket's cgroup v2 id (INET_DIAG_CGROUP_ID: the inode number of the
 * cgroup's directory in the v2 hierarchy): [inode, port, idLow, idHigh, ...]; id 0 when the
 * kernel did not say. Absent in addons built before it (the caller then runs `ss --cgroup`).
 */
export declare function listeningSocketsCgroup(): Uint32Array;
/**
 * The nf_tables ruleset generation id of the calling thread's network namespace
 * (NFT_MSG_GETGEN): every committed transaction (nft or iptables-nft) moves it. Throws
 * TESSERA_ERR_SOCK_DIAG when the kernel refuses. Absent in addons built before it.
 */
export declare function nftGeneration(): number;
/**
 * A raw IP socket (IPPROTO_RAW, send-only, non-blocking; IPv6 with IPV6_HDRINCL) for packets
 * whose IP header the caller writes. With `netns` the calling thread enters that network
 * namespace only to create it (as Queue does); the socket then sends from there and keeps the
 * namespace alive until rawClose. `mark` sets SO_MARK. Returns the fd. Throws TypeError (code
 * TESSERA_ERR_INVALID_ARGUMENT) for bad arguments, Error (code TESSERA_ERR_RAW_SOCKET, errno
 * set) when the kernel refuses. Absent in addons built before it.
 */
export declare function rawSocket(family: 4 | 6, netns?: string, mark?: number): number;
/** Sends packet[0..length) to the destination in its own IP header: bytes sent, or -errno. */
export declare function rawSend(fd: number, packet: Uint8Array, length?: number): number;
/** Closes a socket from rawSocket. */
export declare function rawClose(fd: number): void;
