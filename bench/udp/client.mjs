// UDP client for bench/udp.ts; prints one JSON line.
//   latency ADDR PORT N RETRY_MS   N queries, each from a new socket (a new flow): µs from the
//                                  first send to the answer; a query unanswered after RETRY_MS
//                                  is sent again (as a resolver does), at most 5 times.
//   flows ADDR PORT SECONDS CONC   new-flow query/responses completed per second, CONC at once
//   stream ADDR PORT SECONDS WIN   one flow, WIN datagrams in flight: echoed datagrams per second
import dgram from 'node:dgram';
const [mode, addr, portS, a3, a4] = process.argv.slice(2);
const port = Number(portS);
const type = addr.includes(':') ? 'udp6' : 'udp4';
const Q = Buffer.alloc(40, 0x71); // a DNS-sized query
setTimeout(() => process.exit(3), 120_000).unref();

function query(retryMs) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(type);
    const t0 = process.hrtime.bigint();
    let tries = 0;
    let timer;
    const send = () => {
      if (++tries > 5) {
        clearTimeout(timer);
        s.close();
        return resolve(null);
      }
      s.send(Q, port, addr);
      timer = setTimeout(send, retryMs);
    };
    s.on('message', () => {
      clearTimeout(timer);
      s.close();
      resolve({ us: Number(process.hrtime.bigint() - t0) / 1000, tries });
    });
    send();
  });
}

if (mode === 'latency') {
  const n = Number(a3);
  const us = [];
  let lost = 0;
  let retried = 0;
  for (let i = 0; i < n; i++) {
    const r = await query(Number(a4));
    if (!r) lost++;
    else {
      us.push(r.us);
      if (r.tries > 1) retried++;
    }
  }
  console.log(JSON.stringify({ us, lost, retried }));
} else if (mode === 'flows') {
  const end = Date.now() + Number(a3) * 1000;
  let done = 0;
  let lost = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const r = await query(1000);
      if (r) done++;
      else lost++;
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: Number(a4) }, worker));
  console.log(JSON.stringify({ perSec: (done * 1000) / (Date.now() - t0), done, lost }));
} else if (mode === 'stream') {
  const s = dgram.createSocket(type);
  const win = Number(a4);
  let got = 0;
  let counting = false;
  let t0 = 0;
  s.on('message', () => {
    if (counting) got++;
    s.send(Q);
  });
  s.connect(port, addr, () => {
    // Warm up (the flow's exchange), then count for SECONDS.
    for (let i = 0; i < win; i++) s.send(Q);
    setTimeout(() => {
      counting = true;
      t0 = Date.now();
      setTimeout(() => {
        console.log(JSON.stringify({ perSec: (got * 1000) / (Date.now() - t0), got }));
        process.exit(0);
      }, Number(a3) * 1000);
    }, 500);
  });
  // Lost datagrams would shrink the window: top it up now and then.
  setInterval(() => {
    for (let i = 0; i < 4; i++) s.send(Q);
  }, 200).unref();
}
