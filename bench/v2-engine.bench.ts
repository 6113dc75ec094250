// Protocol v2 engine micro-benchmark: what one mutual authorization costs in the pure engine,
// per pass, without the kernel or packet parsing. Two engines (client host "a", server host
// "b", CA trust), after first contact (the steady state: tokens by reference, pair keys
// cached), real block bytes, each connection a new tuple and ISN.
// Run: npx tsx bench/v2-engine.bench.ts [--node-crypto] [--connections N]
// Compare with bench/handshake.bench.ts (v1, six passes incl. packet rebuilds) in the same run.
import { createHash, randomFillSync } from 'node:crypto';
import { loadNative } from '../src/datapath/native.js';
import { createV2Engine, type TupleView, type V2Engine } from '../src/datapath/handshake/v2/index.js';
import { NODE_DIGESTS, createCa, createEphemeralKey, createHostKey, createTokenIssuer, createTokenVerifier, issueHostCertificate, type TokenIssuer } from '../src/identity/index.js';
import type { IssuedToken } from '../src/datapath/handshake/types.js';
import { x25519FromSeed } from '../test/unit/datapath/v2/helpers.js';

const digests = process.argv.includes('--node-crypto') ? NODE_DIGESTS : loadNative();
const nArg = process.argv.indexOf('--connections');
const N = nArg > 0 ? Number(process.argv[nArg + 1]) : 50_000;
console.log(`digests: ${digests === NODE_DIGESTS ? 'node:crypto' : 'native addon'}; ${N} connections`);

const ca = await createCa('bench-ca');
async function issuer(name: string): Promise<TokenIssuer> {
  const hk = await createHostKey();
  const certificate = await issueHostCertificate(ca, { host: name, hostPublicJwk: hk.publicJwk, validityDays: 1 });
  return createTokenIssuer({ mode: 'ca', hostId: name, ...hk, certificate });
}
async function token(iss: TokenIssuer, id: string, hostKey: Uint8Array): Promise<IssuedToken> {
  const key = createEphemeralKey();
  const text = await iss.issue({ id, labels: ['app=bench'], epkPublicRaw: key.publicRaw, hostKeyRaw: hostKey }, Math.floor(Date.now() / 1000), 600);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey };
}
const keyA = x25519FromSeed(randomFillSync(new Uint8Array(32)));
const keyB = x25519FromSeed(randomFillSync(new Uint8Array(32)));
function engine(own: typeof keyA): V2Engine {
  const verifier = createTokenVerifier({ mode: 'ca', caPublicJwk: ca.publicJwk });
  return createV2Engine({
    now: Date.now,
    random: (out) => void randomFillSync(out),
    verifyToken: (b) => verifier.verify(b),
    hostStaticKeys: [{ publicRaw: own.publicRaw, privateKey: own.privateKey }],
    digests,
    startedAt: Date.now() - 60_000,
    options: { registerEntries: 1 << 18 },
  });
}
const a = engine(keyA);
const b = engine(keyB);
const clientPu = { tokens: [await token(await issuer('host-a'), 'web', keyA.publicRaw)] };
const serverPu = { tokens: [await token(await issuer('host-b'), 'db', keyB.publicRaw)] };

const buf = Uint8Array.of(10, 213, 100, 1, 10, 213, 100, 2);
const t: TupleView = { buf, addrLength: 4, clientAddrOffset: 0, serverAddrOffset: 4, clientPort: 0, serverPort: 443 };
const out = new Uint8Array(4096);
const synBuf = new Uint8Array(4096);
const time = new Float64Array(4);
let failures = 0;

function one(i: number, measure: boolean): void {
  t.clientPort = 1024 + (i % 60000);
  const isnC = (i * 2654435761) >>> 0;
  const isnS = isnC ^ 0x5a5a5a5a;
  let t0 = process.hrtime.bigint();
  const s = a.clientSynOut(t, isnC, clientPu, synBuf);
  let t1 = process.hrtime.bigint();
  if (measure) time[0]! += Number(t1 - t0);
  if (s.kind !== 'attach') return void failures++;
  t0 = process.hrtime.bigint();
  const r = b.serverSynIn(t, isnC, synBuf.subarray(0, s.length));
  t1 = process.hrtime.bigint();
  if (measure) time[1]! += Number(t1 - t0);
  if (r.kind === 'refuse') return void failures++;
  t0 = process.hrtime.bigint();
  const sa = b.serverSynAckOut(t, isnC, isnS, serverPu, out);
  t1 = process.hrtime.bigint();
  if (measure) time[2]! += Number(t1 - t0);
  if (sa.kind === 'refuse') return void failures++;
  t0 = process.hrtime.bigint();
  const c = a.clientSynAckIn(t, isnC, isnS, out.subarray(0, sa.length));
  t1 = process.hrtime.bigint();
  if (measure) time[3]! += Number(t1 - t0);
  if (c.kind === 'refuse') failures++;
}

// First contact (retry, then proof) and warm-up.
for (let i = 0; i < 3; i++) one(i, false);
for (let i = 3; i < 5_000; i++) one(i, false);
failures = 0;
// Rounds, medians per step: the machine is shared, single rounds are noisy.
const ROUNDS = 5;
const perRound = Math.floor(N / ROUNDS);
const rounds: number[][] = [];
let next = 5_000;
for (let r = 0; r < ROUNDS; r++) {
  time.fill(0);
  for (let i = 0; i < perRound; i++) one(next++, true);
  rounds.push([...time].map((ns) => ns / perRound / 1000));
}
const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const names = ['SYN out (client)', 'SYN in (server)', 'SYN-ACK out (server)', 'SYN-ACK in (client)'];
console.log(`µs per connection, median of ${ROUNDS} rounds x ${perRound} connections (one at a time):`);
for (let k = 0; k < 4; k++) console.log(`  ${names[k]!.padEnd(22)} ${median(rounds.map((r) => r[k]!)).toFixed(1)}`);
console.log(`  client host            ${median(rounds.map((r) => r[0]! + r[3]!)).toFixed(1)}`);
console.log(`  server host            ${median(rounds.map((r) => r[1]! + r[2]!)).toFixed(1)}`);
console.log(`  both                   ${median(rounds.map((r) => r[0]! + r[1]! + r[2]! + r[3]!)).toFixed(1)}`);
// Without per-step clocks, as this thread's CPU time: what a shared machine's waiting does not inflate.
const cpu: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < perRound; i++) one(next++, false);
  const dc = process.cpuUsage(c0);
  cpu.push((dc.user + dc.system) / perRound);
}
console.log(`  both, untimed steps    ${median(cpu).toFixed(1)} µs CPU per connection`);
console.log(`failures ${failures}`);
const st = b.stats();
console.log(`server: register ${st.registerSize}, pair key derivations ${st.pairKeyDerivations}, token by reference hits ${st.peerTokenHits} misses ${st.peerTokenMisses}`);
