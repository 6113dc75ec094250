// Token rotation end to end, on a fake clock: the daemon's PU registry issues and rotates
// tokens, its snapshots feed two in-process handshake hosts (the workers' code), and
// handshakes keep working across a rotation — the new token is issued and used, the old one
// is still accepted (from a peer that has not caught up, and for a handshake in flight)
// until it expires, and refused after that.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PuRegistry, type Pu } from '../../../src/daemon/pus.js';
import { createSecret, createTokenIssuer } from '../../../src/identity/index.js';
import type { NetCls } from '../../../src/rules/index.js';
import { HOOK_POST_ROUTING, HOOK_PRE_ROUTING } from '../../../src/datapath/handshake/handshake.js';
import { createHash } from 'node:crypto';
import { decodeBlock2 } from '../../../src/datapath/handshake/v2/index.js';
import { markForPuIndex, OP_CLEAR_SERVER_PENDING } from '../../../src/marks.js';
import { TCP_ACK, TCP_SYN } from '../../../src/packet/index.js';
import { A_ADDR, B_ADDR, DIRECTORY, handshake, makeHost, run, seg, tcp, type Host } from '../datapath/handshake-helpers.js';

const TTL = 600;
const SKEW = 30;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const netcls = { create: async () => undefined, remove: async () => undefined, cgroup2Ref: async () => undefined } as unknown as NetCls;

/** A host: the daemon's registry, and the worker's view of it (the snapshot it was last sent). */
function side(name: string, psk: Uint8Array) {
  const host = makeHost(name, psk);
  // As the daemon does: tokens carry the host's handshake key (claim hk).
  const base = createTokenIssuer({ mode: 'psk', hostId: name, psk });
  const issuer = { ...base, issue: (pu: Parameters<typeof base.issue>[0], now: number, ttl: number) => base.issue({ ...pu, hostKeyRaw: host.staticKey.publicRaw }, now, ttl) };
  const registry = new PuRegistry({ netcls, issuer, tokenTtlSeconds: TTL, onChange: () => undefined });
  // Published by the fleet: a at .1, b at .2.
  DIRECTORY.set(name === 'host-a' ? '10.213.9.1' : '10.213.9.2', host.staticKey.publicRaw);
  /** What the pool does on a change: send the registry's snapshot to the worker. */
  const push = () => {
    const s = registry.snapshot();
    host.pus.clear();
    host.ports.clear();
    for (const p of s.pus) host.pus.set(p.index, { index: p.index, id: p.id, labels: p.labels, tokens: p.tokens });
    for (const [port, index] of s.ports) host.ports.set(port, host.pus.get(index)!);
  };
  return { registry, host, push };
}

/** Whether a tagged SYN or SYN-ACK carries `token`, in full or by reference (the first 16 bytes of its SHA-256). */
function carries(bytes: Uint8Array, token: Uint8Array): boolean {
  const p = tcp(bytes);
  const d = decodeBlock2(bytes.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength));
  if (typeof d === 'string' || !('token' in d.block) || !d.block.token) throw new Error(`no token: ${String(d)}`);
  const part = Buffer.from(d.block.token);
  return part.equals(Buffer.from(token)) || part.equals(createHash('sha256').update(token).digest().subarray(0, 16));
}

const ok = (h: ReturnType<typeof handshake>) => [h.synIn.reason, h.synAckIn.reason, h.synAckOut.mark];

describe('token rotation, end to end on a fake clock', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(T0);
  });
  afterEach(() => vi.useRealTimers());

  it('issues a new token at half life; handshakes keep working; the old token is accepted until it expires', async () => {
    const psk = createSecret();
    const a = side('host-a', psk);
    const b = side('host-b', psk);
    const client: Pu = await a.registry.create({ name: 'curl', kind: 'process', labels: ['app=web'], index: 1 });
    const server: Pu = await b.registry.create({ name: 'web', kind: 'process', labels: ['app=web'], index: 1 });
    b.registry.setObserved(server, [100], [80]);
    a.push();
    b.push();
    const firstA = client.tokens[0]!.bytes;
    let sport = 42000;
    const connect = (opts: { isnC?: number } = {}) => handshake(a.host, b.host, { sport: sport++, ...opts });

    const before = connect();
    expect(ok(before)).toEqual(['ok', 'ok', OP_CLEAR_SERVER_PENDING]);
    expect(carries(before.synOut.bytes, firstA)).toBe(true);

    // Not yet half its life: nothing to rotate.
    vi.setSystemTime(T0 + 200_000);
    expect(await a.registry.rotate()).toBe(0);

    // Past half life: a new token is issued, the old one kept behind it.
    vi.setSystemTime(T0 + 301_000);
    // A handshake in flight across the client's rotation: the SYN leaves with the old token...
    const inFlight = seg(A_ADDR, B_ADDR, 43000, 80, 9000, 0, TCP_SYN);
    const synOut = run(a.host, inFlight, HOOK_POST_ROUTING, markForPuIndex(1));
    expect(carries(synOut.bytes, firstA)).toBe(true);
    expect(await a.registry.rotate()).toBe(1);
    a.push();
    expect(client.tokens).toHaveLength(2);
    expect(client.tokens[1]!.bytes).toEqual(firstA);
    expect(client.tokens[0]!.bytes).not.toEqual(firstA);
    // ...and its SYN-ACK is checked after the rotation: the old token's key still proves it.
    expect(run(b.host, synOut.bytes, HOOK_PRE_ROUTING).reason).toBe('ok');
    const synAck = run(b.host, seg(B_ADDR, A_ADDR, 80, 43000, 7000, 9001, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING);
    expect(synAck.mark).toBe(OP_CLEAR_SERVER_PENDING);
    expect(run(a.host, synAck.bytes, HOOK_PRE_ROUTING, markForPuIndex(1)).reason).toBe('ok');

    // New connections carry the new token; b has not rotated yet and still answers with its old one.
    const after = connect();
    expect(ok(after)).toEqual(['ok', 'ok', OP_CLEAR_SERVER_PENDING]);
    expect(carries(after.synOut.bytes, client.tokens[0]!.bytes)).toBe(true);
    const oldB = server.tokens[0]!.bytes;
    expect(carries(after.synAckOut.bytes, oldB)).toBe(true);

    // b rotates too; both new tokens work.
    expect(await b.registry.rotate()).toBe(1);
    b.push();
    const both = connect();
    expect(ok(both)).toEqual(['ok', 'ok', OP_CLEAR_SERVER_PENDING]);
    expect(carries(both.synAckOut.bytes, oldB)).toBe(false);

    // A peer that missed the rotation (a stale worker snapshot with only the first token) is
    // accepted until that token expires (a token held by reference is checked against the
    // engine's own skew, 3 s, tighter than the verifier's)...
    const stale = side('host-a', psk);
    stale.host.pus.set(1, { index: 1, id: client.id, labels: client.labels, tokens: [client.tokens[1]!] });
    vi.setSystemTime(T0 + (TTL - 5) * 1000);
    expect(ok(handshake(stale.host, b.host, { sport: sport++ }))).toEqual(['ok', 'ok', OP_CLEAR_SERVER_PENDING]);
    // ...and refused once it has.
    vi.setSystemTime(T0 + (TTL + SKEW + 5) * 1000);
    expect(handshake(stale.host, b.host, { sport: sport++ }).synIn.reason).toBe('expired');
    // The registry drops it at its next rotation; the current tokens keep working.
    await a.registry.rotate();
    a.push();
    expect(client.tokens.some((t) => t.bytes === firstA)).toBe(false);
    expect(ok(connect())).toEqual(['ok', 'ok', OP_CLEAR_SERVER_PENDING]);
  });
});
