#!/usr/bin/env node
'use strict';
// The installed `tessera` command (package.json "bin"). It checks the Node.js version first,
// then loads the CLI (dist/src/bin/tessera.js). The check cannot live in that ES module: its
// imports are linked before any of its code runs, and on an old Node.js the linking itself
// fails (a missing export of node:util, say) with an error that names no version.

var problem = require('./node-check.cjs').nodeProblem(process.versions.node);
if (problem) {
  process.stderr.write('tessera: ' + problem + '\n');
  process.exit(1);
}

var path = require('path');
var url = require('url');
var entry = path.join(__dirname, '..', 'dist', 'src', 'bin', 'tessera.js');
import(url.pathToFileURL(entry).href).catch(function (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).indexOf(entry) !== -1) {
    process.stderr.write('tessera: this installation has no ' + entry + ': reinstall the package (or, in a checkout, run npm run build)\n');
    process.exit(1);
  }
  // Anything else is what running the CLI directly would show.
  setImmediate(function () {
    throw err;
  });
});
