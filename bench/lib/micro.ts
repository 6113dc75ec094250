// The timing loop of the micro-benchmarks (bench/*.bench.ts): calibrate a batch to ~40 ms,
// run 15 batches, print and return the median ns per call (and the minimum).

export const BATCHES = 15;
const TARGET_BATCH_NS = 40e6;

export function bench(name: string, fn: () => unknown, width = 58): number {
  let sink: unknown;
  let iters = 1000;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) sink = fn();
    const dt = Number(process.hrtime.bigint() - t0);
    if (dt > TARGET_BATCH_NS / 4) {
      iters = Math.max(1000, Math.round((iters * TARGET_BATCH_NS) / dt));
      break;
    }
    iters *= 4;
  }
  const per: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) sink = fn();
    per.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  // Keep the result observable so the engine cannot drop the calls.
  if (sink === Symbol.for('never')) console.log(sink);
  per.sort((x, y) => x - y);
  const median = per[Math.floor(per.length / 2)]!;
  console.log(`${name.padEnd(width)} ${median.toFixed(1).padStart(8)} ns/op  (min ${per[0]!.toFixed(1)})`);
  return median;
}
