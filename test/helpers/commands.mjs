// The stdin/stdout protocol of the test helper processes (tap-queue, tap-raw, hostile-*):
// one JSON object per line in both directions. `{"cmd":"exit"}` or the end of stdin closes
// the helper's resource and exits; anything unparsable is answered with {ev:"bad-input"}.

import { createInterface } from 'node:readline';

/** Write one event line for the test. */
export const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

/**
 * Serve commands from stdin. `handle(msg)` gets every command but exit (it may be async;
 * an error becomes {ev:"error"}); `close()` releases the helper's socket or queue before exit.
 * With `sequential`, each command starts after the previous one finished.
 */
export function serveCommands(handle, close, { sequential = false } = {}) {
  let chain = Promise.resolve();
  const exit = () => {
    try {
      close();
    } catch {
      /* already closed */
    }
    process.exit(0);
  };
  const run = (fn) => {
    const p = sequential ? (chain = chain.then(fn)) : Promise.resolve().then(fn);
    p.catch((err) => out({ ev: 'error', message: String(err) }));
  };
  createInterface({ input: process.stdin }).on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      return out({ ev: 'bad-input', line });
    }
    if (msg.cmd === 'exit') run(exit);
    else run(() => handle(msg));
  });
  process.stdin.on('end', () => run(exit));
}
