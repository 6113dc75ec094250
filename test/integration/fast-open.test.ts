// Issue #10, case 6 (a), on the real kernel path: a PU client whose kernel sends TCP Fast Open
// data in its SYN. Before, that SYN left untagged and unjudged (and the server refused it as a
// peer without a token); now the client host's worker drops it (`fast-open`), the client
// kernel retransmits a plain SYN, which is tagged, and the data follows the handshake.
// Two namespace hosts (PSK trust), busybox httpd as PU app=nginx on b, a Python client with
// MSG_FASTOPEN as PU app=nginx on a, whose namespace allows TFO without a cookie.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { skipBecause } from '../helpers/skip.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, sleep, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { reasonCounts } from '../helpers/metrics.js';

skipBecause(!isRoot, 'TCP Fast Open from a PU (needs root)', 'integration tests need root: run npm test as root');

/** Sends its request as SYN data (MSG_FASTOPEN), prints the body of the answer. */
const TFO_CLIENT = `
import socket, sys
s = socket.socket()
s.settimeout(8)
s.sendto(b'GET / HTTP/1.0\\r\\n\\r\\n', socket.MSG_FASTOPEN, (sys.argv[1], 80))
data = b''
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
sys.stdout.write(data.decode().split('\\r\\n\\r\\n', 1)[-1])
`;

const reasons = (h: TesseraHost): Promise<Record<string, number>> => reasonCounts(h.socket);

describe.runIf(isRoot)('TCP Fast Open from a PU: the SYN with data is dropped, the retry is authorized', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;
  let www: string;
  const PAGE = 'hello over fast open\n';

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('tf'), hosts: ['a', 'b'], subnet: 90 + (process.pid % 5), trust: 'psk' });
    [a, b] = [cluster.host('a'), cluster.host('b')];
    // Client TFO (1) without a cookie (4): the very first SYN carries the data.
    const sysctl = await a.exec(['sysctl', '-w', 'net.ipv4.tcp_fastopen=5']);
    expect(sysctl.code, sysctl.stderr).toBe(0);
    www = mkdtempSync(join(tmpdir(), 'tessera-tf-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
    b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', www]);
    await b.waitForListener(80);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (www) rmSync(www, { recursive: true, force: true });
  }, 120_000);

  it('3 of 3 TFO clients get the page; each first SYN (with data) is dropped on the client host, none reaches b untagged', async () => {
    const beforeA = await reasons(a);
    const beforeB = await reasons(b);
    const runs = 3;
    const pages: string[] = [];
    for (let i = 0; i < runs; i++) {
      // The kernel remembers SYN-data losses per destination (tcp_metrics) and stops trying
      // TFO there after two: forget them, so every run sends its data in the SYN.
      await a.exec(['ip', 'tcp_metrics', 'flush', 'all']);
      const r = await a.runPu(['app=nginx'], ['python3', '-c', TFO_CLIENT, b.addr], 20_000);
      pages.push(r.code === 0 ? r.stdout : `exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
    }
    await sleep(400); // worker statistics reach the daemon every 250 ms
    const dA = await reasons(a);
    const dB = await reasons(b);
    const d = (now: Record<string, number>, then: Record<string, number>, k: string) => (now[k] ?? 0) - (then[k] ?? 0);
    expect({
      pages: pages.filter((p) => p === PAGE).length,
      fastOpenDroppedOnA: d(dA, beforeA, 'fast-open'),
      untaggedRefusedOnB: d(dB, beforeB, 'missing-token'),
    }).toEqual({ pages: runs, fastOpenDroppedOnA: runs, untaggedRefusedOnB: 0 });
  }, 90_000);
});
