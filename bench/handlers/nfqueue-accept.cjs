// Benchmark handler: the npm `nfqueue` binding (node-nfqueue) accepting every packet.
// It is IPv4-only, one packet per wakeup and main-thread only (it cannot load in a worker),
// which is why it is a competitor here and not the datapath.
// Usage: node nfqueue-accept.cjs --queue N
// Prints "ready" once bound; exits 0 on SIGTERM/SIGINT with a packet count on stderr.
'use strict';

const path = require('node:path');

function queueArg(argv) {
  const i = argv.indexOf('--queue');
  const n = i >= 0 ? Number(argv[i + 1]) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write('usage: node nfqueue-accept.cjs --queue N\n');
    process.exit(2);
  }
  return n;
}

const queueNum = queueArg(process.argv.slice(2));
let nfq;
try {
  nfq = require('nfqueue');
} catch (err) {
  const dir = path.join(__dirname, '..', '..', 'node_modules', 'nfqueue');
  process.stderr.write(`nfqueue binding not built (${err.message}); run: cd ${dir} && npx node-gyp rebuild\n`);
  process.exit(3);
}

let packets = 0;
// 4 MiB socket buffer: the default 64 KiB drops packets under 32-in-flight bursts.
nfq.createQueueHandler(queueNum, 4 * 1024 * 1024, (pkt) => {
  packets++;
  pkt.setVerdict(nfq.NF_ACCEPT);
});

function stop() {
  process.stderr.write(`nfqueue-accept: queue ${queueNum}, ${packets} packets\n`);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdout.write('ready\n');
