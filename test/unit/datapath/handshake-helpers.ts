// Builders shared by the handshake unit tests: two (or more) in-process "hosts" running the
// same handshake code and crypto binding as the workers, fed real packet bytes.

import { createHash, generateKeyPairSync, randomFillSync } from 'node:crypto';
import {
  createHandshake,
  HOOK_POST_ROUTING,
  HOOK_PRE_ROUTING,
  type FlowRecord,
  type Handshake,
  type HandshakeOptions,
  type HandshakeVerifier,
  type IssuedToken,
  type LocalPu,
} from '../../../src/datapath/handshake/handshake.js';
import { createVerifier } from '../../../src/datapath/crypto.js';
import type { HostStaticKey, V2Options } from '../../../src/datapath/handshake/v2/index.js';
import type { TrustConfig } from '../../../src/datapath/messages.js';
import { createEphemeralKey, createSecret, createTokenIssuer, type TokenIssuer } from '../../../src/identity/index.js';
import { createDefaultPolicy, type Policy } from '../../../src/policy/index.js';
import { markForPuIndex } from '../../../src/marks.js';
import { parseTcp, rebuild, TCP_ACK, TCP_SYN, type TcpPacket } from '../../../src/packet/index.js';
import { build } from '../packet/helpers.js';

export const A_ADDR = Uint8Array.of(10, 213, 9, 1);
export const B_ADDR = Uint8Array.of(10, 213, 9, 2);
export const M_ADDR = Uint8Array.of(10, 213, 9, 3);
export const SYN_OPTIONS = Uint8Array.of(2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7);
export const MARKER = Uint8Array.of(253, 4, 0x7e, 0x55);
export const ACK_OPTIONS = Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1);

export interface Host {
  name: string;
  /** The policy this host's handshake asks (replace it to change policy, as a worker's snapshot does). */
  policy: Policy;
  hs: Handshake;
  pus: Map<number, LocalPu>;
  ports: Map<number, LocalPu>;
  flows: FlowRecord[];
  issuer: TokenIssuer;
  verifier: ReturnType<typeof createVerifier>;
  /** This host's static handshake key (what <stateDir>/handshake.key holds). */
  staticKey: HostStaticKey;
  addPu(index: number, labels: string[], port?: number): Promise<LocalPu>;
  rotate(pu: LocalPu): Promise<LocalPu>;
}

export async function issue(issuer: TokenIssuer, id: string, labels: string[], nowOffset = 0, ttl = 600): Promise<IssuedToken> {
  const key = createEphemeralKey();
  const text = await issuer.issue({ id, labels, epkPublicRaw: key.publicRaw }, Math.floor(Date.now() / 1000) + nowOffset, ttl);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey };
}

/** What a host may use instead of the PSK defaults: a CA-mode issuer and trust, a clock. */
export interface HostSetup {
  issuer?: TokenIssuer;
  trust?: TrustConfig;
  now?: () => number;
  /** A container's namespace: every local port is this PU's (as the worker sets it up). */
  namespacePu?: number;
  /**
   * The fleet's host key directory (address text → key), shared by the hosts of a test. A
   * host whose address is in it is known before first contact (no retry exchange).
   */
  directory?: Map<string, Uint8Array>;
  /** Protocol v2 engine options (register bound, freshness window). */
  v2?: Partial<V2Options>;
  /** The verifier the handshake is given (default: the host's plain one); e.g. createHandshakeCrypto's `tokens`, as in the workers. */
  handshakeVerifier?: HandshakeVerifier;
  /** When the host's strike register started (default: a minute ago, long before any proof of a test). */
  startedAt?: number;
}

/** The hosts' published keys by address, as fleet2's directory would give them. */
export const DIRECTORY = new Map<string, Uint8Array>();

export function staticKey(): HostStaticKey {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicRaw: new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')) };
}

export function makeHost(name: string, psk: Uint8Array, options: Partial<HandshakeOptions> = {}, setup: HostSetup = {}): Host {
  const pus = new Map<number, LocalPu>();
  const ports = new Map<number, LocalPu>();
  const flows: FlowRecord[] = [];
  const base = setup.issuer ?? createTokenIssuer({ mode: 'psk', hostId: name, psk });
  // As the daemon does: every token carries this host's handshake key (claim hk).
  const issuer: TokenIssuer = { ...base, issue: (pu, now, ttl) => base.issue({ ...pu, hostKeyRaw: key.publicRaw }, now, ttl) };
  const key = staticKey();
  const directory = setup.directory ?? DIRECTORY;
  const verifier = createVerifier(setup.trust ?? { mode: 'psk', secret: psk }, 30);
  const hs = createHandshake({
    verifier: setup.handshakeVerifier ?? verifier,
    random: (b) => void randomFillSync(b),
    hostStaticKeys: [key],
    ...(setup.v2 ? { v2: setup.v2 } : {}),
    startedAt: setup.startedAt ?? Date.now() - 60_000,
    hostKeys: { lookup: (address) => (directory.has(address) ? { host: address, key: directory.get(address)! } : undefined) },
    policy: () => host.policy,
    puByIndex: (i) => pus.get(i),
    puByLocalPort: setup.namespacePu === undefined ? (p) => ports.get(p) : () => pus.get(setup.namespacePu!),
    now: setup.now ?? Date.now,
    onFlow: (r) => flows.push(r),
    options,
  });
  const host: Host = {
    name,
    policy: createDefaultPolicy(),
    hs,
    pus,
    ports,
    flows,
    issuer,
    staticKey: key,
    verifier,
    async addPu(index, labels, port) {
      const pu: LocalPu = { index, id: `${name}-pu${index}`, labels: [...labels].sort(), tokens: [await issue(issuer, `${name}-pu${index}`, labels)] };
      pus.set(index, pu);
      if (port !== undefined) ports.set(port, pu);
      return pu;
    },
    async rotate(pu) {
      const next: LocalPu = { ...pu, tokens: [await issue(issuer, pu.id, [...pu.labels]), ...pu.tokens] };
      pus.set(pu.index, next);
      for (const [p, v] of ports) if (v === pu) ports.set(p, next);
      return next;
    },
  };
  return host;
}

export function seg(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number, payload = new Uint8Array(0)): Uint8Array {
  const options = flags & TCP_SYN ? SYN_OPTIONS : ACK_OPTIONS;
  return build({ family: 4, src, dst, sport, dport, seq, ack, flags, window: 64240, options, payload });
}

export function run(h: Host, bytes: Uint8Array, hook: number, mark = 0) {
  const out = new Uint8Array(65536);
  const d = h.hs.handle(bytes, hook, mark, out);
  return { verdict: d.verdict, mark: d.mark, reason: d.reason, bytes: d.length > 0 ? out.slice(0, d.length) : bytes };
}

export function tcp(bytes: Uint8Array): TcpPacket {
  const p = parseTcp(bytes);
  if (!p.ok) throw new Error(`unparsable packet: ${p.reason}`);
  return p;
}

/** Recompute the IP and TCP checksums of a (mutated) packet, as its sender would, so that it passes the checksum gate. */
export function repair(bytes: Uint8Array): Uint8Array {
  const p = parseTcp(bytes);
  if (!p.ok) return bytes;
  const out = new Uint8Array(bytes.length + 64);
  const n = rebuild(bytes, p, {}, out);
  return typeof n === 'number' ? out.slice(0, n) : bytes;
}

/** Rewrite the source address of a packet (checksums recomputed) — what a replaying host does. */
export function fromAddress(bytes: Uint8Array, src: Uint8Array): Uint8Array {
  const p = tcp(bytes);
  const opt = bytes.slice(p.tcpOffset + 20, p.tcpOffset + p.tcpHeaderLength);
  return build({ family: 4, src, dst: bytes.slice(16, 20), sport: p.srcPort, dport: p.dstPort, seq: p.seq, ack: p.ack, flags: p.flags, window: p.window, options: opt, payload: bytes.slice(p.payloadOffset, p.payloadOffset + p.payloadLength) });
}

/** A full handshake A:sport -> B:80 (four passes; the ACK never reaches a queue); returns every packet on the wire. */
export function handshake(a: Host, b: Host, opts: { sport?: number; isnC?: number; isnS?: number; clientIndex?: number } = {}) {
  const sport = opts.sport ?? 40000;
  const isnC = opts.isnC ?? 1000;
  const isnS = opts.isnS ?? 5000;
  const idx = opts.clientIndex ?? 1;
  const syn = seg(A_ADDR, B_ADDR, sport, 80, isnC, 0, TCP_SYN);
  const synOut = run(a, syn, HOOK_POST_ROUTING, markForPuIndex(idx));
  const synIn = run(b, synOut.bytes, HOOK_PRE_ROUTING);
  const synAck = seg(B_ADDR, A_ADDR, 80, sport, isnS, isnC + 1, TCP_SYN | TCP_ACK);
  const synAckOut = run(b, synAck, HOOK_POST_ROUTING);
  const synAckIn = run(a, synAckOut.bytes, HOOK_PRE_ROUTING, markForPuIndex(idx));
  return { syn, synOut, synIn, synAck, synAckOut, synAckIn, isnC, isnS, sport };
}

/** The usual pair: host-a with client PU 1 (app=nginx), host-b serving PU 1 (app=nginx) on port 80. */
export async function hostPair(psk: Uint8Array, setup: HostSetup = {}): Promise<{ a: Host; b: Host }> {
  const a = makeHost('host-a', psk, {}, setup);
  const b = makeHost('host-b', psk, {}, setup);
  // Published by the fleet: each knows the other's key before first contact.
  const dir = setup.directory ?? DIRECTORY;
  dir.set('10.213.9.1', a.staticKey.publicRaw);
  dir.set('10.213.9.2', b.staticKey.publicRaw);
  await a.addPu(1, ['app=nginx']);
  await b.addPu(1, ['app=nginx'], 80);
  return { a, b };
}
