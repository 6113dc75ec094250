#!/usr/bin/env node
// The `tessera` executable: privileged commands go to src/daemon, everything else to src/cli.

import { runCli } from '../cli/main.js';
import { HELP } from '../cli/help.js';
import { runDaemon, runCleanup } from '../daemon/index.js';

const [command, ...rest] = process.argv.slice(2);
if (command === 'daemon') await runDaemon(rest, HELP.daemon!);
else if (command === 'cleanup') await runCleanup(rest, HELP.cleanup!);
else process.exitCode = await runCli(process.argv.slice(2));
