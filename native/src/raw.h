// rawSocket/rawSend/rawClose: raw IP sockets in a given network namespace (see raw.c).
#ifndef TESSERA_RAW_H
#define TESSERA_RAW_H
#include <node_api.h>

// Defines exports.rawSocket, rawSend and rawClose. Returns napi_ok or the failing status.
napi_status raw_init(napi_env env, napi_value exports);
#endif
