// Connection-rate and latency benchmark of NFQUEUE handlers in network namespaces.
// Usage and scenarios: bench/README.md. As root: npx tsx bench/run.ts [--quick] [--json] ...
// Progress goes to stderr; the table (or, with --json, the JSON) to stdout.
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot } from '../scripts/lib/netns.js';
import { errorMessage } from '../src/errors.js';
import { Bench, renderTable } from './lib/harness.js';
import { DEFAULTS, USAGE, parseOptions, type BenchOptions } from './lib/options.js';
import { buildPrograms } from './lib/build.js';
import { runScale } from './scale.js';
import { runUdpBench } from './udp.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (s: string): void => {
  process.stderr.write(s + '\n');
};

async function main(): Promise<number> {
  let opts: BenchOptions | null;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    log(errorMessage(err));
    return 2;
  }
  if (opts === null) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (!isRoot) {
    log('bench: needs root (network namespaces, iptables, NFQUEUE): run as root, e.g. sudo npm run bench');
    return 1;
  }

  if (opts.udp) {
    try {
      process.stdout.write(await runUdpBench(root, { runs: opts.runs, seconds: opts.seconds, queries: 200 }, log));
      return 0;
    } catch (err) {
      log(`bench: udp failed: ${errorMessage(err)}`);
      return 1;
    }
  }

  if (opts.pus > 0) {
    // The scale scenario: its own hosts and daemons (bench/scale.ts).
    try {
      const bin = await buildPrograms(root, log);
      const concurrency = opts.concurrency === DEFAULTS.concurrency ? 8 : opts.concurrency;
      const onSignal = (cleanup: () => Promise<void>) => (sig: NodeJS.Signals): void => {
        log(`bench: ${sig}: cleaning up`);
        void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
      };
      const table = await runScale(root, bin, { pus: opts.pus, runs: opts.runs, seconds: opts.seconds, concurrency, runSamples: 5, idleSeconds: 5 }, log, (cleanup) => {
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, onSignal(cleanup));
      });
      process.stdout.write(table);
      return 0;
    } catch (err) {
      log(`bench: scale failed: ${errorMessage(err)}`);
      return 1;
    }
  }

  const abort = new AbortController();
  const bench = new Bench(root, opts, log, abort.signal);
  // Ctrl-C / kill: stop at once, end our processes by PID, remove the topology, then exit.
  // Ctrl-C reaches us twice (from the terminal and relayed by tsx): a repeat within a second
  // is the same request. A later one means "now": synchronous cleanup, then exit.
  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    const code = sig === 'SIGINT' ? 130 : 143;
    if (firstSignalAt) {
      if (Date.now() - firstSignalAt < 1000) return;
      bench.cleanupSync();
      process.exit(code);
    }
    firstSignalAt = Date.now();
    log(`bench: ${sig}: cleaning up`);
    abort.abort();
    void bench.cleanup().finally(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Any other way out (an uncaught error, process.exit elsewhere) still removes everything.
  process.on('exit', () => bench.cleanupSync());

  try {
    const result = await bench.run();
    const json = JSON.stringify(result, null, 2) + '\n';
    if (opts.out) {
      writeFileSync(opts.out, json);
      log(`bench: JSON written to ${opts.out}`);
    }
    if (opts.json && !opts.out) process.stdout.write(json);
    else process.stdout.write(renderTable(result));
    return 0;
  } catch (err) {
    if (abort.signal.aborted) return 130;
    log(`bench: failed: ${errorMessage(err)}`);
    return 1;
  } finally {
    await bench.cleanup();
  }
}

process.exitCode = await main();
