// listeningSockets(): the TCP sockets in LISTEN state of the calling thread's network
// namespace, from a NETLINK_SOCK_DIAG dump (see diag.c).
#ifndef TESSERA_DIAG_H
#define TESSERA_DIAG_H

#include <node_api.h>

// Defines exports.listeningSockets. Returns napi_ok, or the failing status (an exception may
// be pending).
napi_status diag_init(napi_env env, napi_value exports);

#endif
