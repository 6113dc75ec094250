// Tessera through a NAT middlebox (issue 13, and protocol v2's "NAT" section): two Tessera hosts
// a and b with a router namespace r between them that translates addresses, as a home or cloud
// gateway does. Neither protocol v2's proofs nor the UDP exchange's MACs cover the addresses or
// ports, so both survive the rewrite; replays from another address are the host-wide strike
// register's to refuse (test/integration/udp-attacks.test.ts, replay.test.ts).
//
//   MASQUERADE: r rewrites a's source to its own address on b's side (b sees the client as r);
//   DNAT:       a calls r's address on a's side and r forwards the port to b (a sees the server as r).
//
// In each: same labels succeed over TCP (v2) and UDP (the exchange); another label and an
// unprotected client are refused. Counts and outcomes only.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../scripts/lib/cluster.js';
import { isRoot, run } from '../../scripts/lib/netns.js';
import { createRouted, type Routed } from '../helpers/router.js';
import { skipBecause } from '../helpers/skip.js';
import { udpEcho, udpQuery } from './udp-apps.js';

skipBecause(!isRoot, 'Tessera through NAT (needs root)', 'integration tests need root: run npm test as root');

const here = dirname(fileURLToPath(import.meta.url));
const HELPER = join(here, '..', 'helpers', 'seq-conn.mjs');
const PREFIX = 'udppropn';
const NET_A = 182;
const NET_B = 183;
const TCP_PORT = 8182;
const UDP_PORT = 5382;

interface Done {
  attempts: number;
  completed: number;
  failures: Array<{ i: number; error: string }>;
}

describe.runIf(isRoot)('TCP (protocol v2) and UDP (the exchange) between PUs through a NAT router', () => {
  let net: Routed;
  const node = process.execPath;
  const rA = `10.213.${NET_A}.1`; // r's address on a's side
  const rB = `10.213.${NET_B}.1`; // r's address on b's side

  async function tcp(labels: string[] | null, addr: string, count = 3): Promise<Done> {
    const argv = [node, HELPER, 'run', addr, String(TCP_PORT), String(count), '8000', String(count * 8000 + 5000)];
    const r = labels ? await net.a.runPu(labels, argv, count * 8000 + 20_000) : await net.a.exec(argv, { timeoutMs: count * 8000 + 20_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Done;
  }
  async function udp(labels: string[] | null, addr: string): Promise<string> {
    const r = labels ? await net.a.runPu(labels, udpQuery(addr, UDP_PORT), 30_000) : await net.a.exec(udpQuery(addr, UDP_PORT), { timeoutMs: 30_000 });
    return r.stdout.trim();
  }
  async function nat(args: string[][]): Promise<() => Promise<void>> {
    for (const a of args) {
      const r = await net.router.exec(['iptables', '-t', 'nat', '-A', ...a]);
      expect(r.code, r.stderr).toBe(0);
    }
    return async () => {
      for (const a of args) await net.router.exec(['iptables', '-t', 'nat', '-D', ...a]);
      // Translations already made live in r's conntrack: forget them with the rules.
      await net.router.exec(['conntrack', '-F']);
    };
  }

  beforeAll(async () => {
    // A run that died half way may have left our namespaces: they are ours to remove.
    for (const n of ['a', 'b', 'r', 'sw']) await run(['ip', 'netns', 'del', `${PREFIX}-${n}`]);
    net = await createRouted({ prefix: PREFIX, netA: NET_A, netB: NET_B, trust: 'ca' });
    net.b.spawnPu(['app=web'], [node, HELPER, 'serve', String(TCP_PORT), '600000']);
    net.b.spawnPu(['app=web'], udpEcho(4, UDP_PORT));
    await net.b.waitForListener(TCP_PORT, 20_000);
    // Routed without translation first: both servers answer.
    await waitFor('the UDP server PU answering', async () => (await udp(['app=web'], net.b.addr)) === 'echo:', 30_000, 200);
    expect((await tcp(['app=web'], net.b.addr, 1)).completed).toBe(1);
  }, 120_000);

  afterAll(async () => {
    await net?.destroy();
  }, 120_000);

  /**
   * Same labels over TCP and UDP to `addr` succeed; another label and an unprotected client are
   * refused; `records`' accepted flows name `remote` (the translated address it saw).
   */
  async function judged(what: string, addr: string, records: 'a' | 'b', remote: string): Promise<void> {
    const same = await tcp(['app=web'], addr);
    const other = await tcp(['app=other'], addr, 1);
    const plain = await tcp(null, addr, 1);
    const u = [await udp(['app=web'], addr), await udp(['app=other'], addr), await udp(null, addr)];
    const flows = await net[records].flows();
    const seen = [...new Set(flows.filter((f) => f.verdict === 'accept').map((f) => `${(f as { protocol?: string }).protocol ?? 'tcp'}:${f.remoteAddr}`))];
    console.log(`${what}: TCP same ${same.completed}/3, other ${other.completed}/1 (${other.failures[0]?.error}), unprotected ${plain.completed}/1; UDP same ${u[0]}, other ${u[1]}, unprotected ${u[2]}; ${records} accepted remote ${seen.join(', ')}`);
    expect(same).toMatchObject({ completed: 3, failures: [] });
    expect(other.completed).toBe(0);
    expect(plain.completed).toBe(0);
    expect(u).toEqual(['echo:', 'none', 'none']);
    expect(seen).toContain(`tcp:${remote}`);
    expect(seen).toContain(`udp:${remote}`);
  }

  it("MASQUERADE: b sees every client as r's address; same labels connect, another label and an unprotected client are refused", async () => {
    const undo = await nat([['POSTROUTING', '-o', 'rb', '-s', `10.213.${NET_A}.0/24`, '-j', 'MASQUERADE']]);
    try {
      // b's flow records name r as the remote address: the translation really happened.
      await judged('MASQUERADE', net.b.addr, 'b', rB);
    } finally {
      await undo();
    }
  }, 120_000);

  it("DNAT (a port forward on r): a calls r's address; same labels connect, another label and an unprotected client are refused", async () => {
    const undo = await nat([
      ['PREROUTING', '-i', 'ra', '-d', rA, '-p', 'tcp', '--dport', String(TCP_PORT), '-j', 'DNAT', '--to-destination', `${net.b.addr}:${TCP_PORT}`],
      ['PREROUTING', '-i', 'ra', '-d', rA, '-p', 'udp', '--dport', String(UDP_PORT), '-j', 'DNAT', '--to-destination', `${net.b.addr}:${UDP_PORT}`],
    ]);
    try {
      // a's records name r's address as the server's: the client never saw b's.
      await judged('DNAT', rA, 'a', rA);
    } finally {
      await undo();
    }
  }, 120_000);
});
