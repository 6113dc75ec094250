// Loads the NFQUEUE addon from native/ whether we run from src/ (tests) or dist/src/ (built).

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { TesseraError } from '../errors.js';

export interface NativeQueueOptions {
  queueNum: number;
  maxLen?: number;
  copyRange?: number;
  /** Ignored (kept for old callers): a full queue always drops; failing open with no reader is the rule's --queue-bypass. */
  failOpen?: boolean;
  batchSize?: number;
  rcvBufBytes?: number;
  /** Network namespace file to create the socket in (the thread returns to its own at once). */
  netns?: string;
}

export interface NativeQueue {
  readonly meta: Uint32Array;
  readonly data: Buffer;
  verdict(id: number, verdict: number, mark?: number, payload?: Uint8Array, payloadLength?: number): void;
  flush(): void;
  close(): void;
  stats(): { received: number; verdicts: number; sendErrors: number; recvErrors: number; enobufs: number; batches: number };
}

export interface NativeModule {
  Queue: new (options: NativeQueueOptions, onBatch: (count: number) => void) => NativeQueue;
  VERDICT: { DROP: 0; ACCEPT: 1; REPEAT: 4 };
  META_FIELDS: number;
  /** out[0..32) = SHA-256(data) (OpenSSL's, inside the node binary). */
  sha256(data: Uint8Array, out: Uint8Array): void;
  /** out[0..32) = HMAC-SHA256(key, data). */
  hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void;
  /** A key's prepared HMAC state (hash.c; Digests.hmacPrepare); absent in older builds. */
  hmacStateBytes?: number;
  hmacPrepare?(key: Uint8Array, state: Uint8Array): void;
  hmacPrepared?(state: Uint8Array, data: Uint8Array, out: Uint8Array): void;
  /** This namespace's LISTEN TCP sockets as [inode, port, inode, port, ...] (sock_diag dump); throws TESSERA_ERR_SOCK_DIAG. */
  listeningSockets(): Uint32Array;
  /** The same with each socket's cgroup v2 id: [inode, port, idLow, idHigh, ...]; absent in older builds. */
  listeningSocketsCgroup?(): Uint32Array;
  /** The nf_tables ruleset generation id of this namespace; absent in older builds. */
  nftGeneration?(): number;
  /** A raw IP socket, made in `netns` when given (native/src/raw.c); absent in older builds. */
  rawSocket?(family: 4 | 6, netns?: string, mark?: number): number;
  /** Bytes sent, or -errno. */
  rawSend?(fd: number, packet: Uint8Array, length?: number): number;
  rawClose?(fd: number): void;
}

function findNativeDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'native', 'index.cjs');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new TesseraError('TESSERA_ERR_NATIVE_LOAD', `cannot find native/index.cjs above ${fileURLToPath(import.meta.url)}: the Tessera install is incomplete; reinstall it, or ${ADDON_FIX}`);
}

/** The fix, for the one line below: the build needs the headers of both libraries. */
const ADDON_FIX = 'run `npm rebuild` in the Tessera directory (it needs: apt-get install -y libnetfilter-queue-dev libmnl-dev pkg-config build-essential)';

/**
 * One line for a person when the addon does not load: what is missing, where it was looked
 * for, the first line of why (node-gyp-build's own message spans lines), and what to run.
 */
export function addonLoadMessage(err: unknown, loader: string): string {
  const root = err instanceof Error && err.cause !== undefined ? err.cause : err;
  const why = (root instanceof Error ? root.message : String(root)).split('\n')[0]!.trim().replace(/\.$/, '');
  return `cannot load the NFQUEUE addon (tessera_nfq.node) for ${dirname(loader)}: ${why}; ${ADDON_FIX}`;
}

export function loadNative(): NativeModule {
  const path = findNativeDir();
  try {
    return createRequire(import.meta.url)(path) as NativeModule;
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_NATIVE_LOAD', addonLoadMessage(err, path), { cause: err });
  }
}

/** The addon's nf_tables generation id reader (src/rules/generation.ts), or null without one. */
export function nftGenerationReader(): (() => number) | null {
  try {
    const native = loadNative();
    return typeof native.nftGeneration === 'function' ? () => native.nftGeneration!() : null;
  } catch {
    return null;
  }
}
