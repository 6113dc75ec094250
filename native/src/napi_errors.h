// Throwing JS errors from the addon's C files, one way for all of them.
#ifndef TESSERA_NAPI_ERRORS_H
#define TESSERA_NAPI_ERRORS_H
#include <node_api.h>

/** Throws the last failed Node-API call's error, unless an exception is already pending. */
void tessera_throw_last_error(napi_env env);
/** Throws an Error with `code` and, when err != 0, an `errno` property. */
void tessera_throw_coded(napi_env env, const char *code, const char *msg, int err);
#endif
