// Fixtures for the protocol v2 engine tests: real tokens (PSK or CA), a real verifier, host
// static keys, a shared fake clock, and the four passes run between two engines over real
// block bytes.

import { createHash, createPrivateKey, createPublicKey, randomFillSync, type KeyObject } from 'node:crypto';
import {
  createCa,
  createEphemeralKey,
  createSecret,
  createTokenIssuer,
  createTokenVerifier,
  type TokenIssuer,
  type TokenVerifier,
  type VerifiedToken,
} from '../../../../src/identity/index.js';
import {
  createV2Engine,
  type HostKeyDirectory,
  type HostStaticKey,
  type TupleView,
  type V2Deps,
  type V2Engine,
  type V2LocalPu,
  type V2Options,
} from '../../../../src/datapath/handshake/v2/index.js';
import type { IssuedToken } from '../../../../src/datapath/handshake/types.js';
import { caHost } from '../../identity/helpers.js';

export const CLIENT_ADDR = Uint8Array.of(10, 213, 77, 1);
export const SERVER_ADDR = Uint8Array.of(10, 213, 77, 2);
export const ATTACKER_ADDR = Uint8Array.of(10, 213, 77, 66);
/** Start of every test clock (ms). */
export const T0 = 1_800_000_000_000;

/** X25519 private key from 32 fixed bytes (PKCS#8 DER wrapping). */
export function x25519FromSeed(seed: Uint8Array): { privateKey: KeyObject; publicRaw: Uint8Array } {
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(seed)]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const x = (createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string }).x;
  return { privateKey, publicRaw: new Uint8Array(Buffer.from(x, 'base64url')) };
}

export function staticKey(notAfter?: number): HostStaticKey {
  const k = x25519FromSeed(randomFillSync(new Uint8Array(32)));
  return notAfter === undefined ? { publicRaw: k.publicRaw, privateKey: k.privateKey } : { publicRaw: k.publicRaw, privateKey: k.privateKey, notAfter };
}

export function tuple(client = CLIENT_ADDR, server = SERVER_ADDR, clientPort = 40000, serverPort = 443): TupleView {
  const buf = new Uint8Array(client.length * 2);
  buf.set(client, 0);
  buf.set(server, client.length);
  return { buf, addrLength: client.length, clientAddrOffset: 0, serverAddrOffset: client.length, clientPort, serverPort };
}

export async function issue(issuer: TokenIssuer, id: string, nowMs: number, hostKey?: Uint8Array, ttl = 600): Promise<IssuedToken> {
  const key = createEphemeralKey();
  const text = await issuer.issue({ id, labels: ['app=' + id], epkPublicRaw: key.publicRaw, ...(hostKey ? { hostKeyRaw: hostKey } : {}) }, Math.floor(nowMs / 1000), ttl);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey };
}

export interface Clock {
  ms: number;
}

export interface Side {
  engine: V2Engine;
  issuer: TokenIssuer;
  verifier: TokenVerifier;
  keys: HostStaticKey[];
  verifications: { count: number };
  revoked: Set<string>;
}

export interface World {
  clock: Clock;
  mode: 'psk' | 'ca';
  client: Side;
  server: Side;
  clientPu: V2LocalPu & { tokens: IssuedToken[] };
  serverPu: V2LocalPu & { tokens: IssuedToken[] };
  /** Rebuild the server engine (a daemon restart): caches, state and register gone. */
  restartServer(options?: Partial<V2Options>): void;
  makeSide(host: string, keys: HostStaticKey[], options?: Partial<V2Options>, directory?: HostKeyDirectory, startedAt?: number, register?: V2Deps['register']): Side;
  issuers: { a: TokenIssuer; b: TokenIssuer };
  trust: () => TokenVerifier;
}

export async function makeWorld(mode: 'psk' | 'ca' = 'psk', options: Partial<V2Options> = {}, directory?: HostKeyDirectory): Promise<World> {
  const clock: Clock = { ms: T0 };
  let a: TokenIssuer;
  let b: TokenIssuer;
  let trust: () => TokenVerifier;
  if (mode === 'psk') {
    const psk = createSecret();
    a = createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk });
    b = createTokenIssuer({ mode: 'psk', hostId: 'host-b', psk });
    trust = () => createTokenVerifier({ mode: 'psk', psk, now: () => clock.ms / 1000 });
  } else {
    const ca = await createCa('v2-ca');
    a = createTokenIssuer(await caHost(ca, 'host-a', { now: T0 / 1000 - 86400 }));
    b = createTokenIssuer(await caHost(ca, 'host-b', { now: T0 / 1000 - 86400 }));
    trust = () => createTokenVerifier({ mode: 'ca', caPublicJwk: ca.publicJwk, now: () => clock.ms / 1000 });
  }
  const issuers = { a, b };

  function makeSide(host: string, keys: HostStaticKey[], opts: Partial<V2Options> = options, dir = directory, startedAt?: number, register?: V2Deps['register']): Side {
    const verifier = trust();
    const verifications = { count: 0 };
    const revoked = new Set<string>();
    const deps: V2Deps = {
      now: () => clock.ms,
      random: (out) => void randomFillSync(out),
      verifyToken: (bytes) => {
        verifications.count++;
        return verifier.verify(bytes);
      },
      revoked: (t: VerifiedToken) => revoked.has(t.claims.iss),
      hostStaticKeys: keys,
      ...(dir ? { hostKeys: dir } : {}),
      ...(startedAt !== undefined ? { startedAt } : {}),
      ...(register ? { register } : {}),
      options: opts,
    };
    return { engine: createV2Engine(deps), issuer: host === 'host-a' ? a : b, verifier, keys, verifications, revoked };
  }

  const serverKeys = [staticKey()];
  const client = makeSide('host-a', [staticKey()]);
  // The server's clock had run for a while before the tests' first connection.
  const server = makeSide('host-b', serverKeys, options, directory, T0 - 60_000);
  const clientPu = { tokens: [await issue(a, 'web', clock.ms, client.keys[0]!.publicRaw)] };
  const serverPu = { tokens: [await issue(b, 'db', clock.ms, serverKeys[0]!.publicRaw)] };
  const w: World = {
    clock,
    mode,
    client,
    server,
    clientPu,
    serverPu,
    issuers,
    trust,
    makeSide,
    restartServer(opts = options) {
      w.server = makeSide('host-b', w.server.keys, opts, directory, clock.ms);
    },
  };
  return w;
}

export interface Pass {
  syn: Uint8Array;
  synIn: ReturnType<V2Engine['serverSynIn']>;
  synAck?: Uint8Array;
  synAckOut?: ReturnType<V2Engine['serverSynAckOut']>;
  synAckIn?: ReturnType<V2Engine['clientSynAckIn']>;
}

/** Run one SYN transmission through both engines (the server's view: `serverView`, default the same tuple). */
export function exchange(w: World, t: TupleView, isnC: number, isnS: number, opts: { serverView?: TupleView; tamperSyn?: (b: Uint8Array) => void; tamperSynAck?: (b: Uint8Array) => void } = {}): Pass {
  const out = new Uint8Array(4096);
  const r = w.client.engine.clientSynOut(t, isnC, w.clientPu, out);
  if (r.kind !== 'attach') throw new Error(`SYN out refused: ${r.reason}`);
  const syn = out.slice(0, r.length);
  opts.tamperSyn?.(syn);
  const synIn = w.server.engine.serverSynIn(opts.serverView ?? t, isnC, syn);
  const pass: Pass = { syn, synIn };
  if (synIn.kind === 'refuse') return pass;
  const sa = w.server.engine.serverSynAckOut(opts.serverView ?? t, isnC, isnS, w.serverPu, out);
  pass.synAckOut = sa;
  if (sa.kind === 'refuse') return pass;
  const synAck = out.slice(0, sa.length);
  opts.tamperSynAck?.(synAck);
  pass.synAck = synAck;
  pass.synAckIn = w.client.engine.clientSynAckIn(t, isnC, isnS, synAck);
  return pass;
}

/**
 * A connection as TCP makes it: SYN transmissions (the kernel retransmits with the same ISN)
 * until the client's SYN-ACK in authorizes, at most `tries`. Returns the passes.
 */
export function connect(w: World, t: TupleView, isnC: number, isnS = isnC ^ 0x5a5a5a5a, tries = 3): Pass[] {
  const passes: Pass[] = [];
  for (let i = 0; i < tries; i++) {
    const p = exchange(w, t, isnC, isnS);
    passes.push(p);
    if (p.synAckIn?.kind !== 'retry') break;
    w.clock.ms += 1000; // the SYN retransmission timer
  }
  return passes;
}

export function last(passes: Pass[]): Pass {
  return passes[passes.length - 1]!;
}
