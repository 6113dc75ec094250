// The UDP exchange (issue 13) as a pure state machine: two in-process hosts with the workers'
// crypto binding, fed real datagram bytes, and an attacker who forges, replays, truncates and
// floods. Each property of docs/protocol.md ("UDP") has a test here.

import { describe, expect, it } from 'vitest';
import { createUdpExchange, MAX_HELLOS, type UdpDecision, type UdpExchange } from '../../../src/datapath/udp/exchange.js';
import { parseUdp, writeUdp, udpChecksumOk } from '../../../src/datapath/udp/packet.js';
import { CONFIRM, FLAG_PROOF, HELLO, REPLY, RETRY, decodeControl, encodeControl } from '../../../src/datapath/udp/wire.js';
import { createRegisterBuffer } from '../../../src/datapath/handshake/v2/register.js';
import type { HostStaticKey } from '../../../src/datapath/handshake/v2/types.js';
import { createHandshakeCrypto } from '../../../src/datapath/crypto.js';
import { HOOK_LOCAL_IN, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_DROP, VERDICT_REPEAT } from '../../../src/datapath/handshake/verdict.js';
import type { LocalPu } from '../../../src/datapath/handshake/types.js';
import type { FlowRecord } from '../../../src/flow.js';
import { createSecret, createTokenIssuer } from '../../../src/identity/index.js';
import { compilePolicy, createDefaultPolicy, type Policy } from '../../../src/policy/index.js';
import { OP_PRESENT, PU_DEST, REJECT_BIT, markForPuIndex } from '../../../src/marks.js';
import { issue, staticKey } from './handshake-helpers.js';

const A4 = Uint8Array.of(10, 213, 130, 1);
const B4 = Uint8Array.of(10, 213, 130, 2);
const M4 = Uint8Array.of(10, 213, 130, 3);
const A6 = Uint8Array.from([0xfd, 0, 2, 0x13, 0, 0x82, ...new Array<number>(9).fill(0), 1]);
const B6 = Uint8Array.from([0xfd, 0, 2, 0x13, 0, 0x82, ...new Array<number>(9).fill(0), 2]);

/** A datagram src:sport -> dst:dport carrying `payload`. */
function dgram(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const family = src.length === 4 ? 4 : 6;
  const tmpl = new Uint8Array(family === 4 ? 28 : 48);
  if (family === 4) {
    tmpl.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17], 0);
    tmpl.set(src, 12);
    tmpl.set(dst, 16);
    tmpl.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8], 20);
  } else {
    tmpl.set([0x60, 0, 0, 0, 0, 8, 17, 64], 0);
    tmpl.set(src, 8);
    tmpl.set(dst, 24);
    tmpl.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8], 40);
  }
  const p = parseUdp(tmpl);
  if (p === 'bad-packet') throw new Error('template');
  const out = new Uint8Array(5000);
  const n = writeUdp(tmpl, p, false, payload, out, 5000);
  return out.slice(0, n);
}

const payloadOf = (b: Uint8Array): Uint8Array => {
  const p = parseUdp(b);
  if (p === 'bad-packet') throw new Error('bad');
  return b.slice(p.payloadOffset, p.payloadOffset + p.payloadLength);
};

interface Host {
  ex: UdpExchange;
  key: HostStaticKey;
  pus: Map<number, LocalPu>;
  flows: FlowRecord[];
  policy: Policy;
}

const psk = createSecret();
/** What a host may share with another run of itself: its static key, PUs, strike register; its clock and epoch. */
interface HostSetup {
  key?: HostStaticKey;
  pus?: Map<number, LocalPu>;
  register?: SharedArrayBuffer;
  now?: () => number;
  startedAt?: number;
}
async function host(name: string, pus: Array<[number, string[]]>, policy: Policy = createDefaultPolicy(), entries = 16_384, setup: HostSetup = {}): Promise<Host> {
  const base = createTokenIssuer({ mode: 'psk', hostId: name, psk });
  const key = setup.key ?? staticKey();
  // As the daemon does: every token carries this host's handshake key (claim hk).
  const issuer = { ...base, issue: (pu: Parameters<typeof base.issue>[0], now: number, ttl: number) => base.issue({ ...pu, hostKeyRaw: key.publicRaw }, now, ttl) };
  const map = setup.pus ?? new Map<number, LocalPu>();
  for (const [i, labels] of setup.pus ? [] : pus) map.set(i, { index: i, id: `${name}-${i}`, labels: [...labels].sort(), tokens: [await issue(issuer, `${name}-${i}`, labels)] });
  const flows: FlowRecord[] = [];
  const h: Host = { pus: map, flows, policy, key, ex: null as unknown as UdpExchange };
  const crypto = createHandshakeCrypto({ mode: 'psk', secret: psk }, createSecret(), 30);
  h.ex = createUdpExchange({
    crypto,
    policy: () => h.policy,
    puByIndex: (i) => map.get(i),
    now: setup.now ?? Date.now,
    onFlow: (r) => flows.push(r),
    proof: { hostStaticKeys: [key], tokens: crypto.tokens, startedAt: setup.startedAt ?? Date.now() - 60_000, ...(setup.register ? { register: { buffer: setup.register, holder: 1 } } : {}) },
    options: { stateEntries: entries },
  });
  return h;
}

function run(h: Host, bytes: Uint8Array, hook: number, mark: number): UdpDecision & { bytes: Uint8Array } {
  const out = new Uint8Array(4096);
  const d = h.ex.handle(bytes, hook, mark, out);
  return { ...d, emit: [...d.emit], bytes: d.length > 0 ? out.slice(0, d.length) : bytes };
}

const CLIENT = markForPuIndex(1);
const SERVER = (PU_DEST | markForPuIndex(1)) >>> 0;
const QUERY = new TextEncoder().encode('a DNS-sized query of forty bytes .......');

/**
 * One exchange a:sport -> b:53 of the query; every step's decision. On first contact (a knows
 * no key of b) the Hello goes unproven, b answers with a Retry, and a's proven Hello follows:
 * `helloIn` is b's decision on the proven one, `proven` its bytes.
 */
function exchange(a: Host, b: Host, src = A4, dst = B4, sport = 40000) {
  const first = dgram(src, dst, sport, 53, QUERY);
  const out = run(a, first, HOOK_POST_ROUTING, CLIENT);
  let helloIn = run(b, out.bytes, HOOK_LOCAL_IN, SERVER);
  let proven = out.bytes;
  let retryIn: (UdpDecision & { bytes: Uint8Array }) | null = null;
  if (helloIn.reason === 'retry') {
    retryIn = run(a, helloIn.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0);
    proven = retryIn.emit[0]!;
    helloIn = run(b, proven, HOOK_LOCAL_IN, SERVER);
  }
  const replyIn = helloIn.emit[0] ? run(a, helloIn.emit[0], HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0) : null;
  const confirmIn = replyIn?.emit[0] ? run(b, replyIn.emit[0], HOOK_LOCAL_IN, SERVER) : null;
  return { first, out, retryIn, proven, helloIn, replyIn, confirmIn };
}

describe('the UDP exchange', () => {
  it('authorizes a same-label flow both ways and releases the held first datagram to the server (IPv4 and IPv6)', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    for (const [src, dst] of [[A4, B4], [A6, B6]] as const) {
      const x = exchange(a, b, src, dst);
      // The first datagram leaves as a Hello on its own 5-tuple (nothing authorized yet).
      expect(x.out.verdict).toBe(VERDICT_ACCEPT);
      expect(decodeControl(payloadOf(x.out.bytes))).toMatchObject({ type: HELLO });
      // The server swallows the Hello and answers with one Reply.
      expect(x.helloIn.verdict).toBe(VERDICT_DROP);
      expect(x.helloIn.emit).toHaveLength(1);
      expect(udpChecksumOk(x.helloIn.emit[0]!, parseUdp(x.helloIn.emit[0]!) as never)).toBe(true);
      // The client authorizes (op, and REJECT_BIT: the Reply is consumed) and sends the Confirm.
      expect(x.replyIn!.verdict).toBe(VERDICT_REPEAT);
      expect(x.replyIn!.mark & (OP_PRESENT | REJECT_BIT)).toBe((OP_PRESENT | REJECT_BIT) >>> 0);
      // The server authorizes and delivers exactly the held query.
      expect(x.confirmIn!.verdict).toBe(VERDICT_REPEAT);
      expect(x.confirmIn!.mark & (OP_PRESENT | REJECT_BIT)).toBe(OP_PRESENT);
      expect(new TextDecoder().decode(payloadOf(x.confirmIn!.bytes))).toBe(new TextDecoder().decode(QUERY));
    }
    expect(b.flows.filter((f) => f.verdict === 'accept' && f.protocol === 'udp' && f.stage === 'confirm')).toHaveLength(2);
    expect(a.flows.filter((f) => f.verdict === 'accept' && f.direction === 'egress')).toHaveLength(2);
  });

  it('refuses another label at the server (silently), with a flow record', async () => {
    const a = await host('a', [[1, ['app=other']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    const x = exchange(a, b);
    expect(x.helloIn.verdict).toBe(VERDICT_DROP);
    expect(x.helloIn.emit).toHaveLength(0);
    expect(x.helloIn.reason).toBe('policy');
    expect(b.flows.at(-1)).toMatchObject({ verdict: 'reject', reason: 'policy', protocol: 'udp', remoteLabels: ['app=other'] });
  });

  it('refuses an unprotected client (no token) unless a network rule allows its address and port; ICMP on request', async () => {
    const b = await host('b', [[1, ['app=dns']]]);
    const plain = dgram(M4, B4, 5000, 53, QUERY);
    expect(run(b, plain, HOOK_LOCAL_IN, SERVER)).toMatchObject({ verdict: VERDICT_DROP, reason: 'missing-token' });
    const net = compilePolicy(['version: 1', 'rules:', '  - id: lan-dns', '    fromNetworks: 10.213.130.3/32', '    to: { app: dns }', '    protocol: udp', '    ports: [53]', '    action: allow', '  - id: icmp', '    fromNetworks: 10.213.130.0/24', '    to: { app: dns }', '    action: reject', '    reject: reset'].join('\n'));
    expect(net.ok, JSON.stringify(!net.ok && net.errors)).toBe(true);
    b.policy = (net as { policy: Policy }).policy;
    const ok = run(b, plain, HOOK_LOCAL_IN, SERVER);
    expect(ok.verdict).toBe(VERDICT_REPEAT);
    expect(ok.mark & REJECT_BIT).toBe(0);
    // Another address of the /24: refused with a port unreachable (REJECT_BIT, accepted into filter INPUT).
    const other = run(b, dgram(Uint8Array.of(10, 213, 130, 9), B4, 5000, 53, QUERY), HOOK_LOCAL_IN, SERVER);
    expect(other.verdict).toBe(VERDICT_ACCEPT);
    expect(other.mark & REJECT_BIT).toBe(REJECT_BIT);
  });

  it('lets a PU client reach a peer without Tessera only through a network rule (no exchange then)', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const first = dgram(A4, M4, 40001, 53, QUERY);
    const d = run(a, first, HOOK_POST_ROUTING, CLIENT);
    expect(decodeControl(payloadOf(d.bytes))).toMatchObject({ type: HELLO }); // default: an exchange, which no one answers
    const net = compilePolicy(['version: 1', 'rules:', '  - id: resolver', '    from: { app: dns }', '    toNetworks: 10.213.130.3/32', '    protocol: udp', '    ports: [53]', '    action: allow'].join('\n'));
    expect(net.ok, JSON.stringify(!net.ok && net.errors)).toBe(true);
    a.policy = (net as { policy: Policy }).policy;
    const direct = run(a, dgram(A4, M4, 40002, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    expect(direct.verdict).toBe(VERDICT_REPEAT);
    expect(direct.length).toBe(0); // the datagram itself, unchanged
    // protocol: udp does not open TCP, and another port is still an exchange.
    expect(run(a, dgram(A4, M4, 40003, 54, QUERY), HOOK_POST_ROUTING, CLIENT).verdict).toBe(VERDICT_ACCEPT);
  });

  it('no replay: a recorded Confirm, Reply or Hello from another exchange authorizes nothing', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    const old = exchange(a, b, A4, B4, 40010);
    expect(old.confirmIn!.verdict).toBe(VERDICT_REPEAT);
    // The proven Hello replayed after its exchange, verbatim or from another address: the
    // strike register holds its macH; unanswered, nothing kept.
    expect(run(b, old.proven, HOOK_LOCAL_IN, SERVER)).toMatchObject({ verdict: VERDICT_DROP, reason: 'replay', emit: [] });
    expect(run(b, dgram(M4, B4, 40011, 53, payloadOf(old.proven)), HOOK_LOCAL_IN, SERVER)).toMatchObject({ verdict: VERDICT_DROP, reason: 'replay', emit: [] });
    expect(b.ex.stats().serverState).toBe(0);
    // The old Confirm: the exchange it proved is over.
    expect(run(b, old.replyIn!.emit[0]!, HOOK_LOCAL_IN, SERVER)).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-state' });
    // A replayed Reply on a new exchange of the client (new nonceC): bad MAC.
    run(a, dgram(A4, B4, 40010, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    expect(run(a, old.helloIn.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0)).toMatchObject({ verdict: VERDICT_DROP, reason: 'bad-mac' });
    // A Confirm from a third host (moved to its address): no state for that tuple.
    const moved = dgram(M4, B4, 40010, 53, payloadOf(old.replyIn!.emit[0]!));
    expect(run(b, moved, HOOK_LOCAL_IN, SERVER).verdict).toBe(VERDICT_DROP);
  });

  it('forged and truncated control packets are refused with a reason, never authorize', async () => {
    const b = await host('b', [[1, ['app=dns']]]);
    const a = await host('a', [[1, ['app=dns']]]);
    const x = exchange(a, b, A4, B4, 40020);
    const hello = payloadOf(x.out.bytes);
    // A forged token (one byte changed in the signature).
    const bad = hello.slice();
    bad[bad.length - 3] ^= 1;
    expect(run(b, dgram(M4, B4, 1, 53, bad), HOOK_LOCAL_IN, SERVER).reason).toMatch(/bad-signature|malformed/);
    for (let cut = 1; cut < hello.length; cut += 37) {
      const d = run(b, dgram(M4, B4, 2, 53, hello.slice(0, cut)), HOOK_LOCAL_IN, SERVER);
      expect(d.verdict).toBe(VERDICT_DROP);
      expect(d.reason, `cut ${cut}`).not.toBe('ok');
    }
    const huge = encodeControl({ type: HELLO, flags: 0, nonceC: new Uint8Array(16), ts: 0, keyId: new Uint8Array(4), macH: new Uint8Array(16), token: new Uint8Array(3000) });
    expect(run(b, dgram(M4, B4, 3, 53, huge), HOOK_LOCAL_IN, SERVER).reason).toBe('too-large');
    // A Reply or Confirm nobody asked for.
    expect(run(b, dgram(M4, B4, 4, 53, encodeControl({ type: CONFIRM, macC: new Uint8Array(16), data: QUERY })), HOOK_LOCAL_IN, SERVER).reason).toBe('no-state');
    expect(run(a, dgram(M4, A4, 53, 4, encodeControl({ type: REPLY, nonceS: new Uint8Array(16), macS: new Uint8Array(16), token: Uint8Array.of(1) })), HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0).reason).toBe('no-state');
    // A PU cannot send our control packets itself.
    expect(run(a, dgram(A4, B4, 40021, 53, hello), HOOK_POST_ROUTING, CLIENT)).toMatchObject({ verdict: VERDICT_DROP, reason: 'malformed' });
  });

  it('survives lost control packets: retries resend the Hello (bounded), a repeated Hello gets the same Reply, a lost Confirm is asked for again', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    exchange(a, b, A4, B4, 40029); // a learns b's key: its Hellos are proven from now on
    const first = run(a, dgram(A4, B4, 40030, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    // Hello lost; the application retries: the same nonceC again, a fresh proof.
    const retry = run(a, dgram(A4, B4, 40030, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    const [h0, h1] = [decodeControl(payloadOf(first.bytes)), decodeControl(payloadOf(retry.bytes))] as Array<{ nonceC: Uint8Array; flags: number }>;
    expect(h1.nonceC).toEqual(h0.nonceC);
    expect(h1.flags).toBe(FLAG_PROOF);
    const r1 = run(b, retry.bytes, HOOK_LOCAL_IN, SERVER);
    // Reply lost; the next retry's Hello gets the same Reply.
    const retry2 = run(a, dgram(A4, B4, 40030, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    const r2 = run(b, retry2.bytes, HOOK_LOCAL_IN, SERVER);
    expect(payloadOf(r2.emit[0]!)).toEqual(payloadOf(r1.emit[0]!));
    const done = run(a, r2.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0);
    expect(done.verdict).toBe(VERDICT_REPEAT);
    // Confirm lost: the client's next datagram reaches the server plain; it asks with the Reply again...
    const plain = run(b, dgram(A4, B4, 40030, 53, QUERY), HOOK_LOCAL_IN, SERVER);
    expect(plain.reason).toBe('missing-proof');
    expect(plain.emit).toHaveLength(1);
    // ...and the client, already authorized, answers with the same Confirm, which the server accepts.
    const again = run(a, plain.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0);
    expect(payloadOf(again.emit[0]!)).toEqual(payloadOf(done.emit[0]!));
    expect(run(b, again.emit[0]!, HOOK_LOCAL_IN, SERVER).verdict).toBe(VERDICT_REPEAT);
    // Hellos per flow are bounded.
    const c = await host('c', [[1, ['app=dns']]]);
    const verdicts = Array.from({ length: MAX_HELLOS + 3 }, () => run(c, dgram(A4, B4, 40031, 53, QUERY), HOOK_POST_ROUTING, CLIENT).verdict);
    expect(verdicts.filter((v) => v === VERDICT_ACCEPT)).toHaveLength(MAX_HELLOS);
  });

  it('bounded state: a flood of first datagrams keeps at most stateEntries flows, and a legit flow still succeeds', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]], createDefaultPolicy(), 256);
    const hello = payloadOf(exchange(a, b, A4, B4, 41000).proven);
    // 5,000 copies of one Hello from as many source ports: refused by the register, nothing kept.
    const replays = Array.from({ length: 5000 }, (_, i) => run(b, dgram(M4, B4, 1024 + i, 53, hello), HOOK_LOCAL_IN, SERVER));
    expect(replays.filter((d) => d.reason === 'replay' && d.emit.length === 0)).toHaveLength(5000);
    // 5,000 genuine first datagrams (each its own proven Hello): each gets a Reply, state stays bounded.
    for (let i = 0; i < 5000; i++) run(b, run(a, dgram(A4, B4, 1024 + i, 53, QUERY), HOOK_POST_ROUTING, CLIENT).bytes, HOOK_LOCAL_IN, SERVER);
    const s = b.ex.stats();
    console.log(`UDP flood: 5000 replayed and 5000 new Hellos, server state ${s.serverState} entries (bound 256)`);
    expect(s.serverState).toBeLessThanOrEqual(256);
    const x = exchange(a, b, A4, B4, 41001);
    expect(x.confirmIn!.verdict).toBe(VERDICT_REPEAT);
  });

  it('rotation: a Reply made for an older token of the client still verifies', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    const out = run(a, dgram(A4, B4, 42000, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    // The client's token rotates while the Hello is in flight.
    const pu = a.pus.get(1)!;
    const issuer = createTokenIssuer({ mode: 'psk', hostId: 'a', psk });
    a.pus.set(1, { ...pu, tokens: [await issue(issuer, pu.id, [...pu.labels]), ...pu.tokens] });
    const retry = run(b, out.bytes, HOOK_LOCAL_IN, SERVER);
    expect(retry.reason).toBe('retry');
    const proven = run(a, retry.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0);
    const hi = run(b, proven.emit[0]!, HOOK_LOCAL_IN, SERVER);
    const ri = run(a, hi.emit[0]!, HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0);
    expect(ri.verdict).toBe(VERDICT_REPEAT);
    expect(run(b, ri.emit[0]!, HOOK_LOCAL_IN, SERVER).verdict).toBe(VERDICT_REPEAT);
  });
  it("the Hello's proof: stale outside the window, restarted before the epoch, replay through another worker sharing the register", async () => {
    let now = Date.now();
    const clock = () => now;
    const a = await host('a', [[1, ['app=dns']]]);
    const register = createRegisterBuffer(1024);
    const b1 = await host('b', [[1, ['app=dns']]], createDefaultPolicy(), 16_384, { register, now: clock });
    const b2 = await host('b', [], createDefaultPolicy(), 16_384, { register, key: b1.key, pus: b1.pus, now: clock });
    const x = exchange(a, b1, A4, B4, 43000);
    expect(x.confirmIn!.verdict).toBe(VERDICT_REPEAT);
    // The other worker (same host key, same shared register): a copy from any tuple is a replay.
    expect(run(b2, x.proven, HOOK_LOCAL_IN, SERVER)).toMatchObject({ reason: 'replay', emit: [] });
    expect(run(b2, dgram(M4, B4, 43001, 53, payloadOf(x.proven)), HOOK_LOCAL_IN, SERVER)).toMatchObject({ reason: 'replay', emit: [] });
    // Outside the window (skew 3 s + age 2 s), whatever the register holds.
    const fresh = run(a, dgram(A4, B4, 43002, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    now += 6_000; // past skew 3 s + age 2 s, with room for the time this test took so far
    expect(run(b1, fresh.bytes, HOOK_LOCAL_IN, SERVER)).toMatchObject({ reason: 'stale', emit: [] });
    // A restarted daemon (epoch = now, its register empty) refuses a Hello made before it.
    const late = run(a, dgram(A4, B4, 43003, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    const b3 = await host('b', [], createDefaultPolicy(), 16_384, { key: b1.key, pus: b1.pus, startedAt: Date.now() + 1, now: () => Date.now() + 1 });
    expect(run(b3, late.bytes, HOOK_LOCAL_IN, SERVER)).toMatchObject({ reason: 'restarted', emit: [] });
    // A changed ts (or any bit of the proof) breaks macH.
    const h = decodeControl(payloadOf(run(a, dgram(A4, B4, 43004, 53, QUERY), HOOK_POST_ROUTING, CLIENT).bytes));
    if (typeof h === 'string' || h.type !== HELLO) throw new Error('no Hello');
    const moved = encodeControl({ ...h, ts: h.ts + 1 });
    expect(run(b1, dgram(A4, B4, 43004, 53, moved), HOOK_LOCAL_IN, SERVER)).toMatchObject({ reason: 'bad-mac', emit: [] });
    // Stripped of its proof: a Retry (our token), nothing kept, no policy.
    const stripped = encodeControl({ ...h, flags: 0, ts: 0, keyId: new Uint8Array(4), macH: new Uint8Array(16) });
    const r = run(b1, dgram(M4, B4, 43005, 53, stripped), HOOK_LOCAL_IN, SERVER);
    expect(r.reason).toBe('retry');
    expect(decodeControl(payloadOf(r.emit[0]!))).toMatchObject({ type: RETRY });
    expect(b1.ex.stats().serverState).toBe(0);
  });

  it('first contact: an unproven Hello gets a Retry; a Retry for no Hello of ours, or a server without a host key, authorizes nothing', async () => {
    const a = await host('a', [[1, ['app=dns']]]);
    const b = await host('b', [[1, ['app=dns']]]);
    const x = exchange(a, b, A4, B4, 44000);
    expect(x.retryIn!.reason).toBe('retry');
    expect(decodeControl(payloadOf(x.proven))).toMatchObject({ type: HELLO, flags: FLAG_PROOF });
    expect(x.confirmIn!.verdict).toBe(VERDICT_REPEAT);
    // A forged Retry (a third host, another nonceC): nothing sent, nothing learned.
    run(a, dgram(A4, M4, 44001, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    const forged = encodeControl({ type: RETRY, nonceC: new Uint8Array(16), token: b.pus.get(1)!.tokens[0]!.bytes });
    expect(run(a, dgram(M4, A4, 53, 44001, forged), HOOK_LOCAL_IN, (PU_DEST | CLIENT) >>> 0)).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-state', emit: [] });
    // A server whose host has no handshake key cannot be proved to: refused, not answered.
    const c = await host('c', [[1, ['app=dns']]]);
    const keyless = createUdpExchange({ crypto: createHandshakeCrypto({ mode: 'psk', secret: psk }, createSecret(), 30), policy: () => createDefaultPolicy(), puByIndex: (i) => c.pus.get(i), now: Date.now, onFlow: () => undefined });
    const hello = run(a, dgram(A4, M4, 44002, 53, QUERY), HOOK_POST_ROUTING, CLIENT);
    expect(keyless.handle(hello.bytes, HOOK_LOCAL_IN, SERVER, new Uint8Array(4096))).toMatchObject({ verdict: VERDICT_DROP, reason: 'no-host-key', emit: [] });
  });
});
