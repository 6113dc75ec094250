// Command-line options of bench/run.ts, validated once with messages that name the fix.
import { TesseraError } from '../../src/errors.js';

export interface BenchOptions {
  /** Rounds of the round-robin: every scenario is measured once per round. */
  runs: number;
  /** Upper bound of each measured phase, seconds. */
  seconds: number;
  /** Upper bound on connections of the rate phase (32 in flight). */
  count: number;
  /** Upper bound on connections of the latency phase (1 in flight). */
  latencyCount: number;
  /** Connections in flight for the rate phase. */
  concurrency: number;
  /** Seconds of untimed connections (same concurrency) before each scenario's timed phases. */
  warmup: number;
  /** Scenario ids to run; null = all. */
  scenarios: string[] | null;
  json: boolean;
  out: string | null;
  /** Bytes of the bulk transfer per scenario and run; 0 = no bulk phase. */
  bulkBytes: number;
  /** Copy handler and server output to stderr. */
  verbose: boolean;
  /** Pin the client to CPU 0 and the servers to CPU 1 (taskset); handlers float. */
  pin: boolean;
  /** The scale scenario (bench/scale.ts): PUs per host in its second phase; 0 = the scenario table instead. */
  pus: number;
  /** The UDP rows instead (bench/udp.ts, issue 13). */
  udp: boolean;
}

export const DEFAULTS: BenchOptions = {
  runs: 5,
  seconds: 3,
  count: 200_000,
  latencyCount: 5_000,
  concurrency: 32,
  warmup: 1.5,
  scenarios: null,
  json: false,
  out: null,
  bulkBytes: 0,
  verbose: false,
  pin: false,
  pus: 0,
  udp: false,
};

export const USAGE = `usage: npx tsx bench/run.ts [options]
  --runs N             rounds; each scenario measured once per round, interleaved (default 5)
  --seconds S          bound of each measured phase (default 3)
  --count N            bound on connections of the rate phase (default 200000)
  --latency-count N    bound on connections of the latency phase (default 5000)
  --concurrency N      connections in flight in the rate phase (default 32)
  --warmup S           untimed connections before each scenario's timed phases, seconds (default 1.5)
  --quick              smoke test: runs 3, seconds 1, warmup 0.3 (explicit values win)
  --scenarios a,b,c    only these scenario ids (see bench/README.md)
  --bulk [MB]          also time a bulk transfer per scenario and run (default 100 MB)
  --json               print JSON instead of the table (or write it to --out)
  --out FILE           write the JSON to FILE (the table still goes to stdout)
  --pin                client on CPU 0, server on CPU 1 (steadier, less like a real box)
  --pus N              the scale scenario instead: daemons with 1 PU, then N PUs per host (bench/README.md)
  --udp                the UDP rows instead: first-datagram latency, new flows/s, datagrams/s (bench/udp.ts)
  --verbose            handler and server output on stderr
  --help`;

function bad(msg: string): never {
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${msg}\n${USAGE}`);
}

function num(flag: string, v: string | undefined, min: number, integer: boolean): number {
  if (v === undefined) bad(`${flag} needs a value`);
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    bad(`${flag} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got "${v}"`);
  }
  return n;
}

/** Parse argv (without node and script); returns null for --help. */
export function parseOptions(argv: readonly string[]): BenchOptions | null {
  const o: BenchOptions = { ...DEFAULTS };
  let quick = false;
  let warmup: number | undefined;
  let runs: number | undefined;
  let seconds: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--help':
      case '-h':
        return null;
      case '--quick':
        quick = true;
        break;
      case '--runs':
        runs = num(a, next(), 1, true);
        break;
      case '--seconds':
        seconds = num(a, next(), 0.1, false);
        break;
      case '--count':
        o.count = num(a, next(), 1, true);
        break;
      case '--latency-count':
        o.latencyCount = num(a, next(), 1, true);
        break;
      case '--concurrency':
        o.concurrency = num(a, next(), 1, true);
        if (o.concurrency > 4096) bad('--concurrency must be at most 4096');
        break;
      case '--warmup':
        warmup = num(a, next(), 0.1, false);
        break;
      case '--scenarios': {
        const v = next();
        if (!v) bad('--scenarios needs a comma-separated list of scenario ids');
        o.scenarios = v.split(',').map((s) => s.trim()).filter(Boolean);
        if (o.scenarios.length === 0) bad('--scenarios needs at least one scenario id');
        break;
      }
      case '--bulk': {
        // The size is optional: "--bulk" alone means 100 MB.
        const v = argv[i + 1];
        const mb = v !== undefined && /^\d+(\.\d+)?$/.test(v) ? num(a, next(), 1, false) : 100;
        o.bulkBytes = Math.round(mb * 1e6);
        break;
      }
      case '--json':
        o.json = true;
        break;
      case '--out': {
        const v = next();
        if (!v) bad('--out needs a file name');
        o.out = v;
        o.json = true;
        break;
      }
      case '--pin':
        o.pin = true;
        break;
      case '--udp':
        o.udp = true;
        break;
      case '--pus':
        o.pus = num(a, next(), 2, true);
        break;
      case '--verbose':
        o.verbose = true;
        break;
      default:
        bad(`unknown option "${a}"`);
    }
  }
  o.runs = runs ?? (quick ? 3 : DEFAULTS.runs);
  o.seconds = seconds ?? (quick ? 1 : DEFAULTS.seconds);
  o.warmup = warmup ?? (quick ? 0.3 : DEFAULTS.warmup);
  return o;
}
