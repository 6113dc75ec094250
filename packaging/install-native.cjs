'use strict';
// npm's install script: builds the NFQUEUE addon (native/) for this machine's Node.js, unless
// a build or a prebuild for it is already there (node-gyp-build). node-gyp comes from npm itself:
// npm puts its bundled node-gyp on PATH for install scripts, so the package needs no copy.
//
// Offline machines: node-gyp would download the Node.js headers. When the running Node.js has
// its headers installed under /usr (Debian's nodejs, NodeSource) and npm was given no nodedir,
// build against those instead.

var fs = require('fs');
var path = require('path');
var spawnSync = require('child_process').spawnSync;

var env = Object.assign({}, process.env);
if (!env.npm_config_nodedir) {
  try {
    var header = fs.readFileSync('/usr/include/node/node_version.h', 'utf8');
    var major = /#define NODE_MAJOR_VERSION (\d+)/.exec(header);
    if (major && major[1] === process.versions.node.split('.')[0]) env.npm_config_nodedir = '/usr';
  } catch (e) {
    /* no system headers: node-gyp fetches them */
  }
}

var bin = require.resolve('node-gyp-build/bin.js');
var r = spawnSync(process.execPath, [bin], { cwd: path.join(__dirname, '..', 'native'), env: env, stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(
    'tessera: building the native NFQUEUE addon failed (see above). It needs a C compiler, python3, pkg-config and the ' +
      'netfilter libraries: apt-get install -y build-essential python3 pkg-config libnetfilter-queue-dev libmnl-dev, ' +
      'then install again [TESSERA_ERR_PREREQ]\n',
  );
  process.exit(r.status || 1);
}
