// Handshake micro-benchmark: what one full mutual authorization costs a datapath worker, per
// step, without the kernel. Two in-process hosts (client PU on "a", server PU on "b", CA
// trust, one label), the same handshake code and crypto binding the workers run, real packet
// bytes. Also checks that interleaved connections (several in flight, as under load) all
// pass, which the kernel benchmark cannot tell apart from other refusals.
// Run: npx tsx bench/handshake.bench.ts [--node-crypto]   (about 10 s, one thread)
// SHA-256/HMAC come from the native addon, as in the workers; --node-crypto uses node:crypto.
import { createHash, generateKeyPairSync, randomFillSync, type KeyObject } from 'node:crypto';
import { createVerifier } from '../src/datapath/crypto.js';
import { loadNative } from '../src/datapath/native.js';
import { NODE_DIGESTS } from '../src/identity/index.js';
import {
  createHandshake,
  HOOK_POST_ROUTING,
  HOOK_PRE_ROUTING,
  type Handshake,
  type IssuedToken,
  type LocalPu,
} from '../src/datapath/handshake/handshake.js';
import {
  createCa,
  createEphemeralKey,
  createHostKey,
  createTokenIssuer,
  issueHostCertificate,
  type TokenIssuer,
} from '../src/identity/index.js';
import { markForPuIndex } from '../src/marks.js';
import { createDefaultPolicy } from '../src/policy/index.js';
import { TCP_ACK, TCP_SYN } from '../src/packet/index.js';
import { build } from '../test/unit/packet/helpers.js';

const A = Uint8Array.of(10, 213, 100, 1);
const B = Uint8Array.of(10, 213, 100, 2);
const PORT = 8090;
const SYN_OPTIONS = Uint8Array.of(2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7);
const ACK_OPTIONS = Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1);
const STEPS = ['syn out (a)', 'syn in (b)', 'syn-ack out (b)', 'syn-ack in (a)'] as const;

const digests = process.argv.includes('--node-crypto') ? NODE_DIGESTS : loadNative();
console.log(`digests: ${digests === NODE_DIGESTS ? 'node:crypto' : 'native addon'}`);
const ca = await createCa('bench-ca');
const caPublicJwk = { ...ca.publicJwk } as Record<string, unknown>;

async function hostIssuer(name: string): Promise<TokenIssuer> {
  const hk = await createHostKey();
  const certificate = await issueHostCertificate(ca, { host: name, hostPublicJwk: hk.publicJwk, validityDays: 1 });
  return createTokenIssuer({ mode: 'ca', hostId: name, ...hk, certificate });
}

async function token(issuer: TokenIssuer, id: string): Promise<IssuedToken> {
  const key = createEphemeralKey();
  const text = await issuer.issue({ id, labels: ['app=bench'], epkPublicRaw: key.publicRaw }, Math.floor(Date.now() / 1000), 600);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey };
}

interface Host {
  hs: Handshake;
  flows: number;
}

function staticKey(): { privateKey: KeyObject; publicRaw: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicRaw: new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')) };
}
const B_KEY = staticKey();

function host(pu: LocalPu, serves: boolean): Host {
  const key = serves ? B_KEY : staticKey();
  const policy = createDefaultPolicy();
  const h: Host = { hs: null as unknown as Handshake, flows: 0 };
  h.hs = createHandshake({
    verifier: createVerifier({ mode: 'ca', caPublicJwk }, 30),
    digests,
    random: (x) => void randomFillSync(x),
    hostStaticKeys: [key],
    // b's key is published (the fleet's directory): no retry exchange.
    hostKeys: { lookup: (address) => (address === '10.213.100.2' ? { host: 'host-b', key: B_KEY.publicRaw } : undefined) },
    startedAt: Date.now() - 60_000,
    policy: () => policy,
    puByIndex: (i) => (i === pu.index ? pu : undefined),
    puByLocalPort: (p) => (serves && p === PORT ? pu : undefined),
    now: Date.now,
    onFlow: () => h.flows++,
  });
  return h;
}

const client: LocalPu = { index: 1, id: 'a-pu1', labels: ['app=bench'], tokens: [await token(await hostIssuer('host-a'), 'a-pu1')] };
const server: LocalPu = { index: 1, id: 'b-pu1', labels: ['app=bench'], tokens: [await token(await hostIssuer('host-b'), 'b-pu1')] };
const a = host(client, false);
const b = host(server, true);
const out = new Uint8Array(65_536);
const reasons = new Map<string, number>();
const stepNs = new Array<number>(STEPS.length).fill(0);

function seg(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number): Uint8Array {
  return build({ family: 4, src, dst, sport, dport, seq, ack, flags, window: 64240, options: flags & TCP_SYN ? SYN_OPTIONS : ACK_OPTIONS, payload: new Uint8Array(0) });
}

/** One step: the decision's output bytes (a copy) and its time. */
function step(i: number, h: Host, bytes: Uint8Array, hook: number, mark: number): Uint8Array {
  const t0 = process.hrtime.bigint();
  const d = h.hs.handle(bytes, hook, mark, out);
  stepNs[i]! += Number(process.hrtime.bigint() - t0);
  if (d.reason !== 'ok') reasons.set(`${STEPS[i]}: ${d.reason}`, (reasons.get(`${STEPS[i]}: ${d.reason}`) ?? 0) + 1);
  return d.length > 0 ? out.slice(0, d.length) : bytes;
}

/** `inFlight` connections at a time, each step done for all of them before the next step. */
function connections(count: number, inFlight: number, firstPort: number): void {
  const mark = markForPuIndex(client.index);
  for (let done = 0; done < count; done += inFlight) {
    const n = Math.min(inFlight, count - done);
    const c = Array.from({ length: n }, (_, k) => ({ sport: firstPort + ((done + k) % 50_000), isnC: (Math.random() * 2 ** 32) >>> 0, isnS: (Math.random() * 2 ** 32) >>> 0 }));
    const synOnWire = c.map((x) => step(0, a, seg(A, B, x.sport, PORT, x.isnC, 0, TCP_SYN), HOOK_POST_ROUTING, mark));
    c.forEach((_, k) => step(1, b, synOnWire[k]!, HOOK_PRE_ROUTING, 0));
    const synAckOnWire = c.map((x) => step(2, b, seg(B, A, PORT, x.sport, x.isnS, (x.isnC + 1) >>> 0, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING, 0));
    c.forEach((_, k) => step(3, a, synAckOnWire[k]!, HOOK_PRE_ROUTING, mark));
  }
}

// Correctness under interleaving first: refusals here are bugs, not load.
for (const inFlight of [1, 2, 32]) {
  reasons.clear();
  connections(2000, inFlight, 20_000);
  const bad = [...reasons].map(([k, n]) => `${k} ${n}`).join(', ');
  console.log(`${inFlight} in flight: 2000 connections, ${bad || 'every step ok'}`);
}

// Then time: warm-up, then 5 rounds of 4000 sequential connections, median per step.
connections(4000, 1, 30_000);
const rounds: number[][] = [];
for (let r = 0; r < 5; r++) {
  stepNs.fill(0);
  connections(4000, 1, 30_000 + r);
  rounds.push(stepNs.map((ns) => ns / 4000 / 1000));
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
console.log('\nµs per connection, median of 5 rounds x 4000 connections (one at a time):');
let ca_ = 0;
let cb = 0;
STEPS.forEach((name, i) => {
  const us = med(rounds.map((r) => r[i]!));
  if (name.endsWith('(a)')) ca_ += us;
  else cb += us;
  console.log(`  ${name.padEnd(16)} ${us.toFixed(1)}`);
});
console.log(`  client host (a)  ${ca_.toFixed(1)}\n  server host (b)  ${cb.toFixed(1)}\n  both             ${(ca_ + cb).toFixed(1)}`);
