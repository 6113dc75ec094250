'use strict';
// Loads the addon (native/build/Release/tessera_nfq.node, or a prebuild) for this
// thread. The addon is context-aware, so every worker_thread may require this file.
// ESM callers: createRequire(import.meta.url)('<path>/native/index.cjs').

let binding;
try {
  binding = require('node-gyp-build')(__dirname);
} catch (cause) {
  const err = new Error(
    'cannot load the Tessera NFQUEUE addon (tessera_nfq.node): install libnetfilter-queue-dev and ' +
      'libmnl-dev (apt-get install -y libnetfilter-queue-dev libmnl-dev pkg-config build-essential), ' +
      'then run: npm rebuild, or: cd native && npx node-gyp rebuild. Cause: ' +
      (cause && cause.message ? cause.message : String(cause)),
    { cause },
  );
  err.code = 'TESSERA_ERR_NATIVE_LOAD';
  throw err;
}

module.exports = {
  Queue: binding.Queue,
  VERDICT: binding.VERDICT,
  META_FIELDS: binding.META_FIELDS,
  sha256: binding.sha256,
  hmacSha256: binding.hmacSha256,
  hmacStateBytes: binding.hmacStateBytes,
  hmacPrepare: binding.hmacPrepare,
  hmacPrepared: binding.hmacPrepared,
  listeningSockets: binding.listeningSockets,
  listeningSocketsCgroup: binding.listeningSocketsCgroup,
  nftGeneration: binding.nftGeneration,
  rawSocket: binding.rawSocket,
  rawSend: binding.rawSend,
  rawClose: binding.rawClose,
};
