// UDP echo server for bench/udp.ts: answers every datagram with itself. argv: port family(4|6).
import dgram from 'node:dgram';
const port = Number(process.argv[2]);
const s = dgram.createSocket(process.argv[3] === '6' ? 'udp6' : 'udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(port, () => process.stdout.write('ready\n'));
setTimeout(() => process.exit(0), Number(process.env.BENCH_MAX_MS ?? 300_000)).unref();
