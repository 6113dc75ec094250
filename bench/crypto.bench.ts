// Identity crypto micro-benchmark: what one handshake packet costs in a datapath worker.
// Run: npx tsx bench/crypto.bench.ts   (about 20 s; single thread; prints ops/s medians)
// Compare rows only within one run: the machine is shared and varies ±10-25 %.

import { jwtVerify } from 'jose';
import { hkdfSync } from 'node:crypto';
import {
  createCa,
  createEphemeralKey,
  createHostKey,
  createKeyAgreement,
  createNonceSource,
  createTokenIssuer,
  createTokenVerifier,
  issueHostCertificate,
  mac,
  sessionKey,
  type CaHostIdentity,
} from '../src/identity/index.js';

const ROUNDS = 5;
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 300);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** ops/s median over ROUNDS rounds of ~ROUND_MS each, calling fn in batches of `batch`. */
function benchSync(fn: (i: number) => unknown, batch = 64): number {
  const rates: number[] = [];
  let k = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    let n = 0;
    let elapsed = 0;
    while (elapsed < ROUND_MS) {
      for (let j = 0; j < batch; j++) fn(k++);
      n += batch;
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    }
    rates.push((n * 1000) / elapsed);
  }
  return median(rates);
}

async function benchAsync(fn: (i: number) => Promise<unknown>): Promise<number> {
  const rates: number[] = [];
  let k = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    let n = 0;
    let elapsed = 0;
    while (elapsed < ROUND_MS) {
      await fn(k++);
      n++;
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    }
    rates.push((n * 1000) / elapsed);
  }
  return median(rates);
}

const rows: [string, number, string][] = [];
function row(name: string, ops: number, note = ''): void {
  rows.push([name, ops, note]);
  console.log(`${name.padEnd(34)} ${Math.round(ops).toLocaleString('en-US').padStart(12)} ops/s  ${(1e6 / ops).toFixed(2).padStart(8)} µs  ${note}`);
}

const now = Math.floor(Date.now() / 1000);
const labels = ['app=nginx', 'env=prod', 'tier=web', 'team=core'];
const psk = new Uint8Array(32).fill(7);
const ca = await createCa('bench-ca');
const hk = await createHostKey();
const host: CaHostIdentity = {
  mode: 'ca',
  hostId: 'host-a',
  ...hk,
  certificate: await issueHostCertificate(ca, { host: 'host-a', hostPublicJwk: hk.publicJwk, validityDays: 30 }),
};
const epk = createEphemeralKey();
const pskIssuer = createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk });
const caIssuer = createTokenIssuer(host);

// Pre-issue distinct tokens so that "miss" rows really miss (one token per PU id).
const MISS_TOKENS = 2000;
const pskTokens: Uint8Array[] = [];
const caTokens: Uint8Array[] = [];
for (let i = 0; i < MISS_TOKENS; i++) {
  const pu = { id: `pu-${i}`, labels, epkPublicRaw: epk.publicRaw };
  pskTokens.push(Buffer.from(await pskIssuer.issue(pu, now, 300)));
  caTokens.push(Buffer.from(await caIssuer.issue(pu, now, 300)));
}
console.log(`token sizes: PSK ${pskTokens[0]!.length} B, CA ${caTokens[0]!.length} B (4 labels, PU id "pu-0")`);
console.log(`rounds: ${ROUNDS} x ${ROUND_MS} ms, median\n`);

row('issue PSK (jose HS256)', await benchAsync((i) => pskIssuer.issue({ id: `pu-${i}`, labels, epkPublicRaw: epk.publicRaw }, now, 300)));
row('issue CA (jose ES256)', await benchAsync((i) => caIssuer.issue({ id: `pu-${i}`, labels, epkPublicRaw: epk.publicRaw }, now, 300)));
const pskKey = new Uint8Array(psk);
row('jose jwtVerify PSK (reference)', await benchAsync((i) => jwtVerify(pskTokens[i % MISS_TOKENS]!, pskKey)));

// Miss rows: a cache of size 1 evicts every entry, so each call does the full check.
const pskMiss = createTokenVerifier({ mode: 'psk', psk, cacheSize: 1 });
row('verify miss PSK (HMAC)', benchSync((i) => pskMiss.verify(pskTokens[i % MISS_TOKENS]!)));
const caMiss = createTokenVerifier({ mode: 'ca', caPublicJwk: ca.publicJwk, cacheSize: 1 });
row('verify miss CA (cert cached)', benchSync((i) => caMiss.verify(caTokens[i % MISS_TOKENS]!)), 'one ECDSA verify');
let certMissRow = 0;
{
  // Fresh verifier every call: certificate and token both verified (two ECDSA verifies).
  certMissRow = benchSync(() => createTokenVerifier({ mode: 'ca', caPublicJwk: ca.publicJwk, cacheSize: 1 }).verify(caTokens[0]!), 8);
  row('verify miss CA (cert too)', certMissRow, 'two ECDSA verifies + verifier setup');
}
const pskHit = createTokenVerifier({ mode: 'psk', psk });
const caHit = createTokenVerifier({ mode: 'ca', caPublicJwk: ca.publicJwk });
for (const t of pskTokens.slice(0, 100)) pskHit.verify(t);
for (const t of caTokens.slice(0, 100)) caHit.verify(t);
row('verify hit PSK', benchSync((i) => pskHit.verify(pskTokens[i % 100]!)), 'SHA-256 + LRU');
row('verify hit CA', benchSync((i) => caHit.verify(caTokens[i % 100]!)), 'SHA-256 + LRU');

const nonces = createNonceSource(new Uint8Array(32).fill(1));
const tuple = [new Uint8Array([10, 213, 0, 1]), new Uint8Array([10, 213, 0, 2]), new Uint8Array([0x9c, 0x40, 0, 80]), new Uint8Array(4)];
row('nonce (HMAC-SHA256, 13 B in)', benchSync(() => nonces.nonce(1, tuple)));

const peers = Array.from({ length: 64 }, () => createEphemeralKey().publicKey);
const kaMiss = createKeyAgreement({ cacheSize: 1 });
row('x25519 miss', benchSync((i) => kaMiss.sharedSecret(epk.privateKey, peers[i % 64]!)));
const kaHit = createKeyAgreement({ cacheSize: 128 });
row('x25519 hit', benchSync((i) => kaHit.sharedSecret(epk.privateKey, peers[i % 64]!)));

const shared = new Uint8Array(32).fill(3);
const nc = new Uint8Array(16).fill(4);
const ns = new Uint8Array(16).fill(5);
const info = Buffer.from('tessera/v1 session');
row('hkdf sessionKey', benchSync(() => sessionKey(shared, nc, ns, info)), 'two HMACs');
const salt = Buffer.concat([nc, ns]);
row('crypto.hkdfSync (reference)', benchSync(() => hkdfSync('sha256', shared, salt, info, 32)));
const key = sessionKey(shared, nc, ns, info);
const th = new Uint8Array(32);
row('mac (HMAC-SHA256, 3 parts)', benchSync(() => mac(key, [nc, ns, th])));
row('createEphemeralKey', benchSync(() => createEphemeralKey(), 8), 'per rotation');

// What a server pays per SYN in the common case: verify hit + x25519 hit + nonce + hkdf + mac.
const perSyn = 1e6 / (rows.find((r) => r[0] === 'verify hit CA')![1]) + 1e6 / (rows.find((r) => r[0] === 'x25519 hit')![1]) +
  1e6 / (rows.find((r) => r[0].startsWith('nonce'))![1]) + 1e6 / (rows.find((r) => r[0] === 'hkdf sessionKey')![1]) +
  1e6 / (rows.find((r) => r[0].startsWith('mac'))![1]);
console.log(`\ncommon case per SYN-ACK (verify hit + x25519 hit + nonce + hkdf + mac): ${perSyn.toFixed(1)} µs`);
const missOverHit = rows.find((r) => r[0] === 'verify hit CA')![1] / rows.find((r) => r[0] === 'verify miss CA (cert cached)')![1];
console.log(`verify CA: hit is ${missOverHit.toFixed(0)}x faster than a miss`);
