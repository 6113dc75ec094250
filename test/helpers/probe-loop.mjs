// An unprotected client connecting in a tight, bounded loop: one attempt every INTERVAL_MS,
// each given TIMEOUT_MS to complete its handshake, at most MAX_ATTEMPTS attempts and MAX_MS
// in all. An attempt that completes (TCP established) is counted and closed at once; the
// point of the tests that run this is that the count stays 0.
//
//   node probe-loop.mjs ADDR PORT INTERVAL_MS TIMEOUT_MS MAX_ATTEMPTS MAX_MS
//
// Events: {ev:"ready"}, {ev:"established", at, localPort} for each one, then {ev:"done", attempts, established, refused, timeouts, errors}
// after {"cmd":"stop"} (or when a bound is reached). Protocol: ./commands.mjs.

import { connect } from 'node:net';
import { out, serveCommands } from './commands.mjs';

const [addr, portText, intervalText, timeoutText, maxAttemptsText, maxMsText] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(intervalText);
const timeoutMs = Number(timeoutText);
const maxAttempts = Number(maxAttemptsText);
const maxMs = Number(maxMsText);

const counts = { attempts: 0, established: 0, refused: 0, timeouts: 0, errors: 0 };
let inFlight = 0;
let stopping = false;
let reported = false;

function attempt() {
  counts.attempts++;
  inFlight++;
  const s = connect({ host: addr, port });
  let settled = false;
  const settle = (what) => {
    if (settled) return;
    settled = true;
    counts[what]++;
    inFlight--;
    clearTimeout(timer);
    s.destroy();
    if (stopping) finish();
  };
  const timer = setTimeout(() => settle('timeouts'), timeoutMs);
  s.once('connect', () => {
    // When and from which port, to find the daemon's log lines of a failure.
    out({ ev: 'established', at: new Date().toISOString(), localPort: s.localPort });
    settle('established');
  });
  s.once('error', (err) => settle(err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' ? 'refused' : 'errors'));
}

function finish() {
  if (reported || inFlight > 0) return;
  reported = true;
  out({ ev: 'done', ...counts });
}

function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(tick);
  clearTimeout(bound);
  finish();
}

const tick = setInterval(() => {
  if (counts.attempts >= maxAttempts) return stop();
  attempt();
}, intervalMs);
const bound = setTimeout(stop, maxMs);

serveCommands(
  (msg) => {
    if (msg.cmd === 'stop') stop();
    else out({ ev: 'bad-input', msg });
  },
  () => {},
);
out({ ev: 'ready' });
