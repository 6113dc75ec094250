// The default-deny invariant as data (docs/security-model.md): every TCP packet of a PU is
// part of an authorized flow, or a handshake packet queued for judgement, or refused; the
// host's own traffic is never queued, dropped or marked. Each packet class is walked through
// the chains buildRuleset() returns by a small interpreter of our rule spelling (walk.ts).

import { describe, expect, it } from 'vitest';
import { buildRuleset, type RulesetSpec } from '../../../src/rules/ruleset.js';
import { classidFor } from '../../../src/rules/cgroups.js';
import {
  CT_AUTHORIZED,
  CT_CLIENT_PENDING,
  CT_PENDING,
  CT_SERVER_PENDING,
  NFMARK_MASK,
  OP_CLEAR_CLIENT_PENDING,
  OP_SET_CLIENT_PENDING,
  HOST_SOCK,
  PU_DEST,
  PU_INDEX_MASK,
  markForPuIndex,
} from '../../../src/marks.js';
import { walk, type Pkt } from './walk.js';

const PU = { index: 3, classid: classidFor(3) };
// PU 3 has no cgroup v2 reference (judged by its port 80); PU 4 is named by the socket lookup
// and listens on 8080, a port number another (non-PU) socket may share.
const spec: RulesetSpec = { queue: { num: 0, count: 1, bypass: false }, pus: [PU, { index: 4, classid: classidFor(4), cgroup2: { path: 'unified/t/p4', cgroup: 't/p4', level: 2 } }], serverPorts: [80], guardPorts: [80, 8080] };
const host = buildRuleset(spec).ipv4.mangle!;
const ns = buildRuleset({ queue: { num: 0, count: 1, bypass: false }, pus: [], serverPorts: [], namespacePu: 7 }).ipv4.mangle!;

/** Egress: OUTPUT (our bits cleared) then POSTROUTING, as a locally sent packet goes. */
function egress(table: typeof host, p: Pkt) {
  const out = walk(table, 'TESSERA-OUTPUT', p);
  return walk(table, 'TESSERA-POSTROUTING', { ...p, nfmark: out.nfmark, connmark: out.connmark });
}
/**
 * Ingress: PREROUTING (our bits cleared), then table inet tessera's socket lookup — unless the
 * flow is authorized: PU_DEST and the index when `socketOf` is the PU whose full socket the
 * packet is for, HOST_SOCK when it is 'host' (a full socket of no PU); absent (a TIME_WAIT or
 * request socket, or none): nothing — then INPUT, after DNAT.
 */
function ingress(table: typeof host, p: Pkt & { socketOf?: number | 'host' }) {
  const pre = walk(table, 'TESSERA-PREROUTING', p);
  const skip = p.socketOf === undefined || isAuthorized(p.connmark ?? 0, p.flags);
  const found = p.socketOf === 'host' ? HOST_SOCK : ((markForPuIndex(p.socketOf as number) | PU_DEST) >>> 0);
  const looked = skip ? pre.nfmark : ((pre.nfmark & ~(PU_INDEX_MASK | PU_DEST)) | found) >>> 0;
  return walk(table, 'TESSERA-INPUT', { ...p, nfmark: looked, connmark: pre.connmark });
}
function isAuthorized(connmark: number, flags: string[]): boolean {
  return ((connmark & (CT_AUTHORIZED | CT_PENDING)) >>> 0) === CT_AUTHORIZED && flags.join() !== 'SYN';
}
const isPendingRst = (connmark: number, flags: string[]) => flags.includes('RST') && (connmark & CT_PENDING) !== 0;

const FLAGSETS = [['SYN'], ['SYN', 'ACK'], ['ACK'], ['ACK', 'PSH'], ['FIN', 'ACK'], ['RST'], ['RST', 'ACK'], ['SYN', 'FIN'], ['SYN', 'RST'], ['URG', 'PSH', 'FIN'], []];
const CONNMARKS = [0, CT_CLIENT_PENDING, CT_SERVER_PENDING, CT_AUTHORIZED, CT_AUTHORIZED | CT_SERVER_PENDING];

describe('default deny, as the rules say it', () => {
  it("never queues, drops or marks the host's own traffic, whatever its flags and marks", () => {
    for (const flags of FLAGSETS) {
      for (const nfmark of [0, 0x4000, 0xffff_ffff, markForPuIndex(3) | OP_CLEAR_CLIENT_PENDING]) {
        const o = egress(host, { flags, dport: 443, nfmark, connmark: 0 });
        expect(o.outcome, `egress ${flags.join(',')} mark ${nfmark}`).toBe('pass');
        // Only our own bits may change (cleared), never anyone else's.
        expect((o.nfmark & ~NFMARK_MASK) >>> 0).toBe((nfmark & ~NFMARK_MASK) >>> 0);
        expect(o.nfmark & NFMARK_MASK).toBe(0);
        // Untagged, to a port no PU listens on, no PU socket.
        const i = ingress(host, { flags, dport: 22, nfmark, connmark: 0 });
        expect(i.outcome, `ingress ${flags.join(',')}`).toBe('pass');
      }
    }
  });

  it('every packet sent by a PU is authorized, queued, or dropped — a process cannot borrow an index with SO_MARK', () => {
    for (const flags of FLAGSETS) {
      for (const connmark of CONNMARKS) {
        const o = egress(host, { flags, dport: 80, classid: PU.classid, connmark });
        if (isAuthorized(connmark, flags) || isPendingRst(connmark, flags)) expect(o.outcome, `${flags.join(',')} ct ${connmark}`).toBe('pass');
        else expect(['queue', 'drop'], `${flags.join(',')} ct ${connmark}`).toContain(o.outcome);
      }
    }
    // A PU known by its cgroup v2: its sockets and its descendants' (docker exec) are its own;
    // a sibling whose name merely starts the same is not.
    for (const cgroup of ['t/p4', 't/p4/exec-1']) {
      const o = egress(host, { flags: ['SYN'], dport: 80, cgroup });
      expect(o.outcome).toBe('queue');
      expect(o.nfmark & PU_INDEX_MASK).toBe(markForPuIndex(4));
    }
    expect(egress(host, { flags: ['ACK'], dport: 80, cgroup: 't/p4' }).outcome).toBe('drop');
    expect(egress(host, { flags: ['ACK'], dport: 80, cgroup: 't/p40' }).outcome).toBe('pass');
    // A SYN with payload (TCP Fast Open) is still a SYN: queued for judgement, never passed.
    expect(egress(host, { flags: ['SYN'], dport: 80, classid: PU.classid }).outcome).toBe('queue');
    // A crossed SYN answered in a simultaneous open (SYN-ACK from the client socket).
    expect(egress(host, { flags: ['SYN', 'ACK'], dport: 80, classid: PU.classid, connmark: CT_CLIENT_PENDING }).outcome).toBe('drop');
    // SO_MARK with a PU index or an op code from a process outside any PU: cleared, passes as host traffic.
    for (const forged of [markForPuIndex(3), OP_CLEAR_CLIENT_PENDING, OP_SET_CLIENT_PENDING | markForPuIndex(3)]) {
      const o = egress(host, { flags: ['SYN'], dport: 80, nfmark: forged });
      expect(o.outcome).toBe('pass');
      expect(o.nfmark & PU_INDEX_MASK).toBe(0);
    }
  });

  it('every packet to a PU socket or server port is authorized, queued, or dropped — INVALID and untracked (connmark 0) included', () => {
    for (const flags of FLAGSETS) {
      for (const connmark of CONNMARKS) {
        // By port (what the scan found), by socket lookup (any port, from the first SYN), both.
        for (const p of [{ dport: 80 }, { dport: 5555, socketOf: PU.index }, { dport: 80, socketOf: PU.index }]) {
          const i = ingress(host, { flags, connmark, ...p });
          if (isAuthorized(connmark, flags) || isPendingRst(connmark, flags)) expect(i.outcome, `${flags.join(',')} ct ${connmark}`).toBe('pass');
          else expect(['queue', 'drop'], `${flags.join(',')} ct ${connmark} ${JSON.stringify(p)}`).toContain(i.outcome);
        }
      }
    }
    // Untracked or INVALID (no connmark to read) to any PU port: never reaches a socket.
    for (const flags of FLAGSETS) for (const dport of [80, 8080]) expect(['queue', 'drop'], `${flags.join(',')} untracked :${dport}`).toContain(ingress(host, { flags, dport, tracked: false }).outcome);
    // A SYN to a port the scan has not seen yet, found by the lookup: judged, with the PU's index.
    const early = ingress(host, { flags: ['SYN'], dport: 5555, socketOf: PU.index });
    expect(early.outcome).toBe('queue');
    expect(early.nfmark & PU_INDEX_MASK).toBe(markForPuIndex(PU.index));
    expect(ingress(host, { flags: ['SYN'], dport: 80 }).outcome).toBe('queue');
    expect(ingress(host, { flags: ['ACK'], dport: 80 }).outcome).toBe('drop'); // an ACK conntrack calls INVALID after a replayed SYN
    expect(ingress(host, { flags: ['SYN'], dport: 22, tagged: true }).outcome).toBe('queue'); // stripped before TCP sees it
  });

  it("leaves a non-PU socket alone on a PU's port number: the lookup found another owner's socket, and conntrack tracks the flow", () => {
    for (const flags of FLAGSETS) expect(ingress(host, { flags, dport: 8080, socketOf: 'host' }).outcome, flags.join(',')).toBe('pass');
    // A tagged SYN is still queued (to strip the token); the worker then finds no PU for it.
    expect(ingress(host, { flags: ['SYN'], dport: 8080, socketOf: 'host', tagged: true }).outcome).toBe('queue');
  });

  it('judges by port a SYN whose lookup found no full socket (a client reusing a 4-tuple in TIME_WAIT), and only a SYN', () => {
    const o = ingress(host, { flags: ['SYN'], dport: 8080 });
    expect(o.outcome).toBe('queue');
    expect(o.nfmark & (PU_DEST | HOST_SOCK)).toBe(0); // the worker falls back to its port map
    // Tracked non-SYN packets there are a request socket's (a flow whose SYN was judged): by connmark.
    expect(ingress(host, { flags: ['ACK'], dport: 8080, connmark: CT_SERVER_PENDING }).outcome).toBe('queue');
    expect(ingress(host, { flags: ['ACK'], dport: 8080, tracked: false }).outcome).toBe('drop');
  });

  it("refuses what reaches a PU client's socket outside its handshake (a SYN-ACK conntrack calls INVALID)", () => {
    expect(ingress(host, { flags: ['SYN', 'ACK'], dport: 40000, socketOf: PU.index }).outcome).toBe('drop');
    const answer = ingress(host, { flags: ['SYN', 'ACK'], dport: 40000, socketOf: PU.index, connmark: CT_CLIENT_PENDING | markForPuIndex(3) });
    expect(answer.outcome).toBe('queue');
    expect(answer.nfmark & PU_INDEX_MASK).toBe(markForPuIndex(3)); // the worker learns the client PU
    expect(ingress(host, { flags: ['RST', 'ACK'], dport: 40000, socketOf: PU.index, connmark: CT_CLIENT_PENDING }).outcome).toBe('pass'); // connection refused
  });

  it('a container namespace is one PU: every TCP packet in or out is authorized, queued, or dropped', () => {
    for (const flags of FLAGSETS) {
      for (const connmark of [0, CT_CLIENT_PENDING, CT_SERVER_PENDING]) {
        const pendingRst = flags.includes('RST') && connmark !== 0;
        for (const o of [egress(ns, { flags, dport: 80, connmark }), ingress(ns, { flags, dport: 12345, connmark })]) {
          if (pendingRst) expect(o.outcome).toBe('pass');
          else expect(['queue', 'drop'], `${flags.join(',')} ct ${connmark}`).toContain(o.outcome);
        }
      }
    }
    expect(egress(ns, { flags: ['SYN'], dport: 80 }).nfmark & PU_INDEX_MASK).toBe(markForPuIndex(7));
    // The reset our REJECT sends a refused client (reply direction of the refused SYN's flow,
    // which never became pending) leaves; a reset in the original direction does not.
    expect(egress(ns, { flags: ['RST', 'ACK'], dport: 40000, reply: true }).outcome).toBe('pass');
    expect(egress(ns, { flags: ['RST', 'ACK'], dport: 80 }).outcome).toBe('drop');
  });

  it('--fail-open (queue bypass) leaves the refusing rules out: unjudged handshakes would never be authorized', () => {
    const open = buildRuleset({ ...spec, queue: { ...spec.queue, bypass: true } }).ipv4.mangle!;
    const drops = Object.values(open.chains).flat().filter((r) => r.includes('DROP'));
    expect(drops).toEqual([]);
    expect(Object.values(host.chains).flat().filter((r) => r.includes('DROP')).length).toBeGreaterThan(0);
  });

  it('UDP and other protocols are not touched (UDP is not authorized yet: docs/security-model.md)', () => {
    expect(egress(host, { flags: [], dport: 53, classid: PU.classid, protocol: 'udp' }).outcome).toBe('pass');
    expect(ingress(host, { flags: [], dport: 80, protocol: 'udp' }).outcome).toBe('pass');
  });
});
