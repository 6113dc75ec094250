#!/usr/bin/env node
// The `tessera` executable: one runner for every command (src/cli/main.ts; the privileged
// ones from src/bin/daemon.ts), and the one place the process ends, with the status the
// command returned. Exiting (rather than only setting process.exitCode) also ends a daemon
// whose worker threads and watchers are still winding down after its stop.

import { runCli } from '../cli/main.js';
import { processIo } from '../cli/output.js';
import { PRIVILEGED } from './daemon.js';

process.exit(await runCli(process.argv.slice(2), processIo(), PRIVILEGED));
