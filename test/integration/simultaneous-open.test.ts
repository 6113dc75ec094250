// Issue #10, case 6 (d), on the real kernel path: a simultaneous open between a PU on a and an
// unprotected peer b (no daemon there). a's SYN never reaches b (b drops it), b's SYN crosses
// it and a's stack answers with a SYN-ACK: a connection is established that no handshake
// judged. Before, the first data segment a sent on it (queued as client-pending) was turned
// into "authorized" by ackOut without any state, and the PU's data reached the unprotected
// peer; now it is dropped (`no-state`). With the default-deny ruleset the crossed handshake
// does not even complete (its SYN-ACK is refused by the rules, or `simultaneous-open`): the
// peer never connects, which is the same outcome — 0 bytes of the PU reach it.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { skipBecause } from '../helpers/skip.js';
import { createCluster, sleep, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { insertRule } from '../helpers/attack.js';
import { reasonCounts } from '../helpers/metrics.js';

skipBecause(!isRoot, 'simultaneous open (needs root)', 'integration tests need root: run npm test as root');

const PORT_A = 40_500;
const PORT_B = 40_600;

/** The PU's side: bind, connect (completed by the crossed SYN), send a secret, linger. */
const PU_SIDE = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', ${PORT_A}))
s.settimeout(15)
try:
    s.connect((sys.argv[1], ${PORT_B}))
except Exception as e:
    print('connect-failed', e, flush=True)
    sys.exit(0)
print('connected', flush=True)
s.sendall(b'SECRET-OF-THE-PU\\n')
time.sleep(4)
`;

/** The peer's side: connect to the PU's bound port until the PU's socket is there (12 s at most), then read. */
const PEER_SIDE = `
import socket, sys, time
deadline = time.time() + 12
while time.time() < deadline:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', ${PORT_B}))
    s.settimeout(2)
    try:
        s.connect((sys.argv[1], ${PORT_A}))
        break
    except Exception:
        s.close()
        time.sleep(0.25)
else:
    print('never-connected', flush=True)
    sys.exit(0)
s.settimeout(3)
data = b''
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
except Exception:
    pass
print('received', len(data), flush=True)
`;

describe.runIf(isRoot)('simultaneous open between a PU and an unprotected peer: no PU data reaches the peer', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;
  let removeDrop: (() => Promise<void>) | null = null;

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('so'), hosts: ['a', 'b'], subnet: 100 + (process.pid % 5), trust: 'psk', start: false });
    [a, b] = [cluster.host('a'), cluster.host('b')];
    await a.startDaemon();
    // b never sees a's SYNs, so the only way the connection forms is b's SYN crossing them.
    removeDrop = await insertRule(b, 'raw', 'PREROUTING', ['-s', a.addr, '-p', 'tcp', '-m', 'tcp', '--syn', '--dport', String(PORT_B), '-j', 'DROP']);
  }, 120_000);

  afterAll(async () => {
    await removeDrop?.().catch(() => undefined);
    await cluster?.destroy();
  }, 120_000);

  it('0 bytes of the PU reach the peer, whether or not the crossed connection forms', async () => {
    const metrics = () => reasonCounts(a.socket);
    const before = await metrics();
    const pu = a.runPu(['app=client'], ['python3', '-c', PU_SIDE, b.addr], 40_000);
    await sleep(300);
    const peer = await b.exec(['python3', '-c', PEER_SIDE, a.addr], { timeoutMs: 40_000 });
    const puOut = await pu;
    await sleep(400); // worker statistics reach the daemon every 250 ms
    const after = await metrics();
    const outcome = /received (\d+)|never-connected/.exec(peer.stdout);
    const refused = ['no-state', 'simultaneous-open'].reduce((n, k) => n + (after[k] ?? 0) - (before[k] ?? 0), 0);
    console.log(`simultaneous open: PU said ${JSON.stringify(puOut.stdout.trim())}, peer said ${JSON.stringify(peer.stdout.trim())}, refusals on a ${refused}`);
    expect(outcome, `the peer's side did not run to its end: ${peer.stdout} ${peer.stderr}`).not.toBeNull();
    expect(outcome![1] === undefined ? 0 : Number(outcome![1])).toBe(0);
  }, 90_000);
});
