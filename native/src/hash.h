// SHA-256 and HMAC-SHA256 exported to JS (see hash.c).
#ifndef TESSERA_HASH_H
#define TESSERA_HASH_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

void tessera_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len, uint8_t out[32]);
/** Adds sha256, hmacSha256, hmacPrepare, hmacPrepared and hmacStateBytes to the addon's exports; -1 with a pending exception on failure. */
int tessera_hash_init(napi_env env, napi_value exports);
#endif
