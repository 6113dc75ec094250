'use strict';
// The Node.js version Tessera needs, checked before anything else loads: by npm's preinstall
// (`node packaging/node-check.cjs`) and by the installed `tessera` command (packaging/tessera.cjs).
// Written for any Node.js version (no newer syntax), so that an old one prints this one line
// instead of a SyntaxError or a missing-export error from deep inside the code.
// Keep MIN in step with package.json's "engines".

var MIN = [20, 12, 0];

/** The one-line problem with Node.js `version` ("20.11.1", "v18.19.0"), or null when it is recent enough. */
function nodeProblem(version) {
  var parts = String(version).replace(/^v/, '').split('.').map(function (p) {
    return parseInt(p, 10) || 0;
  });
  for (var i = 0; i < MIN.length; i++) {
    var have = parts[i] || 0;
    if (have > MIN[i]) return null;
    if (have < MIN[i]) {
      return (
        'Node.js ' + MIN.join('.') + ' or newer is required, this is ' + String(version).replace(/^v?/, 'v') +
        ' (' + process.execPath + '). Install a newer Node.js (e.g. Debian 13 nodejs, or NodeSource 20 or 22) [TESSERA_ERR_PREREQ]'
      );
    }
  }
  return null;
}

module.exports = { nodeProblem: nodeProblem, MIN: MIN.join('.') };

// TESSERA_TEST_NODE_VERSION (test-only: test/integration/package.test.ts) stands in for this Node.js's version.
if (require.main === module) {
  var problem = nodeProblem(process.env.TESSERA_TEST_NODE_VERSION || process.versions.node);
  if (problem) {
    process.stderr.write('tessera: ' + problem + '\n');
    process.exit(1);
  }
}
