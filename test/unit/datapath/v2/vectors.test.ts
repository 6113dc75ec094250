// docs/protocol.md's test vectors, byte for byte: fixed keys, tokens, tuple, ISNs, clock and
// nonces through the engine, and the MACs recomputed here from the document's formulas with
// plain node:crypto (HMAC, HKDF, X25519), so the document, not only the code, is checked.

import { createHash, createHmac, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createV2Engine, type V2Deps } from '../../../../src/datapath/handshake/v2/index.js';
import type { VerifiedToken } from '../../../../src/identity/index.js';
import { tuple, x25519FromSeed } from './helpers.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const seq = (start: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

const CLIENT_EPK = x25519FromSeed(seq(0x00, 32));
const SERVER_HK = x25519FromSeed(seq(0x20, 32));
const TOKEN_C = new Uint8Array(Buffer.from('token-c'));
const TOKEN_S = new Uint8Array(Buffer.from('token-s'));
const sha = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());
const TS = 1_800_000_000_123;
const ISN_C = 0x01020304;
const ISN_S = 0x0a0b0c0d;

function verified(bytes: Uint8Array, epk: Uint8Array, iss: string, hk: Uint8Array | null): VerifiedToken {
  return {
    ok: true,
    claims: { iss, sub: iss === 'host-a' ? 'web' : 'db', lbl: [], epk: Buffer.from(epk).toString('base64url'), iat: 1_799_999_000, exp: 1_800_001_000, v: 1 },
    epkKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(epk).toString('base64url') }, format: 'jwk' }),
    tokenHash: sha(bytes),
    hostKey: hk,
    validUntil: 1_800_001_000,
  };
}

/** The vectors' world: host A (client, token "token-c"), host B (server, token "token-s", static key from seed 20..3f). */
function engines() {
  // The engine asks for random bytes in 1 KB batches: counting bytes from 0x70, so the
  // first nonce is 70..77 and the second 78..7f.
  let nonceStart = 0x70;
  const tokens = new Map<string, VerifiedToken>([
    ['token-c', verified(TOKEN_C, CLIENT_EPK.publicRaw, 'host-a', null)],
    ['token-s', verified(TOKEN_S, x25519FromSeed(seq(0x40, 32)).publicRaw, 'host-b', SERVER_HK.publicRaw)],
  ]);
  const deps = (hostKeys?: V2Deps['hostKeys']): V2Deps => ({
    now: () => TS,
    random: (out) => {
      out.set(seq(nonceStart, out.length));
      nonceStart += 0x10;
    },
    verifyToken: (b) => tokens.get(Buffer.from(b).toString()) ?? { ok: false, reason: 'bad-signature' },
    startedAt: TS - 60_000,
    hostStaticKeys: [{ publicRaw: SERVER_HK.publicRaw, privateKey: SERVER_HK.privateKey }],
    ...(hostKeys ? { hostKeys } : {}),
  });
  const client = createV2Engine(deps({ lookup: () => ({ host: 'host-b', key: SERVER_HK.publicRaw }) }));
  const server = createV2Engine(deps());
  const clientPu = { tokens: [{ bytes: TOKEN_C, hash: sha(TOKEN_C), epkPrivate: CLIENT_EPK.privateKey }] };
  const serverPu = { tokens: [{ bytes: TOKEN_S, hash: sha(TOKEN_S), epkPrivate: x25519FromSeed(seq(0x40, 32)).privateKey }] };
  return { client, server, clientPu, serverPu };
}

/** Runs two connections (the first with full tokens, the second by reference) and returns every block's hex. */
function run() {
  const { client, server, clientPu, serverPu } = engines();
  const out = new Uint8Array(256);
  const blocks: Record<string, string> = {};
  for (const [name, port] of [
    ['first', 40000],
    ['second', 40001],
  ] as const) {
    const t = tuple(undefined, undefined, port);
    const syn = client.clientSynOut(t, ISN_C, clientPu, out);
    if (syn.kind !== 'attach') throw new Error(syn.reason);
    blocks[`${name} SYN`] = hex(out.subarray(0, syn.length));
    const synIn = server.serverSynIn(t, ISN_C, out.slice(0, syn.length));
    if (synIn.kind !== 'proof') throw new Error(JSON.stringify(synIn));
    const sa = server.serverSynAckOut(t, ISN_C, ISN_S, serverPu, out);
    if (sa.kind !== 'proof') throw new Error(JSON.stringify(sa));
    blocks[`${name} SYN-ACK`] = hex(out.subarray(0, sa.length));
    const synAckIn = client.clientSynAckIn(t, ISN_C, ISN_S, out.slice(0, sa.length));
    if (synAckIn.kind !== 'proof') throw new Error(JSON.stringify(synAckIn));
  }
  return blocks;
}

// docs/protocol.md, "Test vectors" (spaces only separate the fields).
const VECTORS: Record<string, string> = {
  'first SYN': '00 a0289810 000001a3185c507b 7071727374757677 0000000000000000 c467576466036519ddf158a0a615e840 0007 746f6b656e2d63 02 01 003a',
  'first SYN-ACK': '00 218a9d028c3873a86394f3f381ff5cf6 0007 746f6b656e2d73 02 02 001e',
  'second SYN': '01 a0289810 000001a3185c507b 78797a7b7c7d7e7f 698eea7df466d816 313808fe6c5723844afa152d3704d1ab 4618883cd3012ea499d728009f5cdd1d 02 01 0041',
  'second SYN-ACK': '01 e950db0274afdae8bb74fe91cf7a1bf8 698eea7df466d816cd222f7be13ba580 02 02 0025',
};

describe('protocol v2 test vectors (docs/protocol.md)', () => {
  it('the engine produces the documented blocks byte for byte', () => {
    const got = run();
    if (process.env.PRINT_VECTORS) console.log(JSON.stringify(got, null, 1));
    for (const [name, want] of Object.entries(VECTORS)) expect(got[name], name).toBe(want.replaceAll(' ', ''));
  });

  it('first contact without a key: the NEED_KEY SYN and the retry that teaches the key; an unknown reference', () => {
    const { server, serverPu } = engines();
    const keyless = createV2Engine({
      now: () => TS,
      random: (out) => out.set(seq(0x90, out.length)),
      verifyToken: () => ({ ok: false, reason: 'bad-signature' }),
    });
    const clientPu = { tokens: [{ bytes: TOKEN_C, hash: sha(TOKEN_C), epkPrivate: CLIENT_EPK.privateKey }] };
    const out = new Uint8Array(256);
    const t = tuple();
    const syn = keyless.clientSynOut(t, ISN_C, clientPu, out);
    expect(syn.kind === 'attach' && hex(out.subarray(0, syn.length))).toBe(
      '02 00000000 0000000000000000 9091929394959697 0000000000000000 00000000000000000000000000000000 0007 746f6b656e2d63 02 01 003a'.replaceAll(' ', ''),
    );
    expect(server.serverSynIn(t, ISN_C, out.slice(0, syn.kind === 'attach' ? syn.length : 0)).kind).toBe('retry');
    const retry = server.serverSynAckOut(t, ISN_C, ISN_S, serverPu, out);
    expect(retry.kind === 'retry' && hex(out.subarray(0, retry.length))).toBe('04 0007 746f6b656e2d73 02 04 000e'.replaceAll(' ', ''));
    // A by-reference SYN naming a token the server does not hold.
    const byRef = Buffer.from(VECTORS['second SYN']!.replaceAll(' ', ''), 'hex');
    const t2 = tuple(undefined, undefined, 40001);
    const { server: fresh } = engines();
    expect(fresh.serverSynIn(t2, ISN_C, byRef).kind).toBe('retry');
    const need = fresh.serverSynAckOut(t2, ISN_C, ISN_S, serverPu, out);
    expect(need.kind === 'retry' && hex(out.subarray(0, need.length))).toBe('02 02 04 0005'.replaceAll(' ', ''));
  });

  it('the documented formulas give the same key and MACs (independent recomputation)', () => {
    const got = run();
    const shared = diffieHellman({ privateKey: CLIENT_EPK.privateKey, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(SERVER_HK.publicRaw).toString('base64url') }, format: 'jwk' }) });
    const pk = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([CLIENT_EPK.publicRaw, SERVER_HK.publicRaw]), 'tessera/2 pair', 32));
    expect(pk.toString('hex')).toBe(PAIR_KEY);
    // No addresses or ports in either MAC (NAT rewrites them): ISNc is the tuple's only part.
    const isnC = Buffer.from('01020304', 'hex');
    const mac = (parts: Buffer[]) => createHmac('sha256', pk).update(Buffer.concat(parts)).digest().subarray(0, 16).toString('hex');
    const refC = Buffer.from(sha(TOKEN_C).subarray(0, 16));
    const refS = Buffer.from(sha(TOKEN_S).subarray(0, 16));
    for (const name of ['first', 'second'] as const) {
      const syn = Buffer.from(got[`${name} SYN`]!, 'hex');
      const macC = mac([Buffer.from('T2S'), isnC, syn.subarray(0, 29), refC]);
      expect(syn.subarray(29, 45).toString('hex'), `${name} macC`).toBe(macC);
      const synAck = Buffer.from(got[`${name} SYN-ACK`]!, 'hex');
      const flags = synAck[0]!;
      const macS = mac([Buffer.from('T2A'), isnC, Buffer.from('0a0b0c0d', 'hex'), Buffer.from(macC, 'hex'), Buffer.of(flags), refS]);
      expect(synAck.subarray(1, 17).toString('hex'), `${name} macS`).toBe(macS);
    }
  });
});

const PAIR_KEY = 'f39ed6c2b074e01a2538a12cec40957ad6bdc0950ae4f1d47c8bdb94345878f6';
