// The fuzz run: at least one million inputs through the packet parser, the handshake block
// decoder and the whole handshake (token verification included), with random bytes and
// mutations of real tagged handshake packets whose checksums are repaired so that they
// reach the deep logic. Zero uncaught exceptions allowed; the counts are printed.

import { describe, expect, it, beforeAll } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { parseTcp, findOption, rebuild, verifyChecksums, TCP_ACK, TCP_SYN, type TcpPacket } from '../../src/packet/index.js';
import { decodeBlock } from '../../src/datapath/handshake/wire.js';
import {
  createHandshake,
  HOOK_POST_ROUTING,
  HOOK_PRE_ROUTING,
  VERDICT_REPEAT,
  type Handshake,
  type LocalPu,
} from '../../src/datapath/handshake/handshake.js';
import { createHandshakeCrypto } from '../../src/datapath/crypto.js';
import { createDefaultPolicy } from '../../src/policy/index.js';
import { createEphemeralKey, createSecret, createTokenIssuer } from '../../src/identity/index.js';
import { markForPuIndex, OP_SET_SERVER_PENDING } from '../../src/marks.js';
import { build } from './packet/helpers.js';

const TARGET = 1_000_000;
const counts = { inputs: 0, parsedOk: 0, refused: 0, crashes: 0 };

const A = Uint8Array.of(10, 213, 9, 1);
const B = Uint8Array.of(10, 213, 9, 2);
const SYN_OPTIONS = Uint8Array.of(2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7);

let client: Handshake;
let server: Handshake;
let tagged: Uint8Array[] = [];

async function pu(issuer: ReturnType<typeof createTokenIssuer>, index: number): Promise<LocalPu> {
  const key = createEphemeralKey();
  const text = await issuer.issue({ id: `pu${index}`, labels: ['app=nginx'], epkPublicRaw: key.publicRaw }, Math.floor(Date.now() / 1000), 600);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { index, id: `pu${index}`, labels: ['app=nginx'], tokens: [{ bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey }] };
}

/** Recompute IP and TCP checksums of a (possibly mutated) packet so it passes the checksum gate. */
function repair(bytes: Uint8Array): Uint8Array {
  const p = parseTcp(bytes);
  if (!p.ok) return bytes;
  const out = new Uint8Array(bytes.length + 64);
  const n = rebuild(bytes, p, {}, out);
  return typeof n === 'number' ? out.slice(0, n) : bytes;
}

function guard(fn: () => void): void {
  counts.inputs++;
  try {
    fn();
  } catch (err) {
    counts.crashes++;
    throw err;
  }
}

describe('fuzz: parsers and handshake never throw on hostile bytes', () => {
  beforeAll(async () => {
    const psk = createSecret();
    const issuer = createTokenIssuer({ mode: 'psk', hostId: 'h', psk });
    const cpu = await pu(issuer, 1);
    const spu = await pu(issuer, 1);
    const mk = (pus: Map<number, LocalPu>, ports: Map<number, LocalPu>) =>
      createHandshake({
        crypto: createHandshakeCrypto({ mode: 'psk', secret: psk }, createSecret(), 30),
        policy: () => createDefaultPolicy(),
        puByIndex: (i) => pus.get(i),
        puByLocalPort: (p) => ports.get(p),
        now: Date.now,
        onFlow: () => {},
        options: { stateEntries: 4096 },
      });
    client = mk(new Map([[1, cpu]]), new Map());
    server = mk(new Map([[spu.index, spu]]), new Map([[80, spu]]));
    // A real exchange to mutate: tagged SYN, SYN-ACK and ACK as they appear on the wire.
    const out = new Uint8Array(65536);
    const syn = build({ family: 4, src: A, dst: B, sport: 40000, dport: 80, seq: 1000, ack: 0, flags: TCP_SYN, window: 64240, options: SYN_OPTIONS, payload: new Uint8Array(0) });
    const d1 = client.handle(syn, HOOK_POST_ROUTING, markForPuIndex(1), out);
    const taggedSyn = out.slice(0, d1.length);
    expect(server.handle(taggedSyn, HOOK_PRE_ROUTING, 0, new Uint8Array(65536)).mark).toBe(OP_SET_SERVER_PENDING);
    const synAck = build({ family: 4, src: B, dst: A, sport: 80, dport: 40000, seq: 5000, ack: 1001, flags: TCP_SYN | TCP_ACK, window: 64240, options: SYN_OPTIONS, payload: new Uint8Array(0) });
    const d2 = server.handle(synAck, HOOK_POST_ROUTING, 0, out);
    const taggedSynAck = out.slice(0, d2.length);
    client.handle(taggedSynAck, HOOK_PRE_ROUTING, markForPuIndex(1), new Uint8Array(65536));
    const ack = build({ family: 4, src: A, dst: B, sport: 40000, dport: 80, seq: 1001, ack: 5001, flags: TCP_ACK, window: 502, options: new Uint8Array(0), payload: new Uint8Array(0) });
    const d3 = client.handle(ack, HOOK_POST_ROUTING, 0, out);
    tagged = [taggedSyn, taggedSynAck, out.slice(0, d3.length)];
    for (const t of tagged) expect(findOption(t, parseTcp(t) as TcpPacket, 253, 0x7e55)).toBeGreaterThan(0);
  });

  it('packet parser and option finder: random bytes and mutated real packets', () => {
    const runs = 400_000;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: 2 }), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), (random, which, flips) => {
        guard(() => {
          const base = flips.length ? tagged[which]!.slice() : random;
          for (const [at, v] of flips) base[at % base.length] = v;
          const p = parseTcp(base);
          if (p.ok) {
            counts.parsedOk++;
            findOption(base, p, 253, 0x7e55);
            verifyChecksums(base, p);
            decodeBlock(base.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength));
          } else counts.refused++;
        });
      }),
      { numRuns: runs },
    );
  });

  it('handshake block decoder: random tails', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        guard(() => {
          if (typeof decodeBlock(bytes) === 'string') counts.refused++;
        });
      }),
      { numRuns: 300_000 },
    );
  });

  it('the whole handshake on mutated tagged packets with repaired checksums (signature, MAC, policy paths)', () => {
    const out = new Uint8Array(65536);
    let authorized = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }), fc.boolean(), (which, flips, ingress) => {
        guard(() => {
          const m = tagged[which]!.slice();
          for (const [at, v] of flips) m[at % m.length] = v;
          const pkt = repair(m);
          const d = (which === 1 ? client : server).handle(pkt, ingress ? HOOK_PRE_ROUTING : HOOK_POST_ROUTING, which === 1 ? markForPuIndex(1) : 0, out);
          if (d.reason !== 'ok') counts.refused++;
          if (d.verdict === VERDICT_REPEAT && d.reason === 'ok') authorized++;
        });
      }),
      { numRuns: TARGET - 700_000 },
    );
    // A mutation that leaves token, block and addresses intact (e.g. in the TTL or window)
    // may still authorize; most mutations must not.
    expect(authorized).toBeLessThan((TARGET - 700_000) / 2);
  });

  it('summary', () => {
    console.log(`fuzz: ${counts.inputs} inputs tried, ${counts.refused} refused, ${counts.parsedOk} parsed, crashes: ${counts.crashes}`);
    expect(counts.inputs).toBeGreaterThanOrEqual(TARGET);
    expect(counts.crashes).toBe(0);
  });
});
