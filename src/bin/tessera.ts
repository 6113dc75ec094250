#!/usr/bin/env node
// The `tessera` executable: one runner for every command (src/cli/main.ts; the privileged
// ones from src/bin/daemon.ts), and the one place the process ends, with the status the
// command returned. Exiting (rather than only setting process.exitCode) also ends a daemon
// whose worker threads and watchers are still winding down after its stop. Output written
// to a pipe may still be queued when the command returns (`tessera status --json` of a few
// thousand PUs is larger than a pipe's buffer): it is flushed first, or exit would cut it.

import { runCli } from '../cli/main.js';
import { processIo } from '../cli/output.js';
import { PRIVILEGED } from './daemon.js';

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const bound = setTimeout(resolve, 10_000); // a reader that never reads does not hold the exit forever
    bound.unref();
    stream.write('', () => {
      clearTimeout(bound);
      resolve();
    });
  });
}

const code = await runCli(process.argv.slice(2), processIo(), PRIVILEGED);
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
