// SHA-256 and HMAC-SHA256 for the datapath workers: the handshake needs about 14 HMACs per
// connection, and node:crypto's createHmac costs ~3 µs each (object creation, not hashing).
// Here one call costs a few hundred ns: SHA-256 is OpenSSL's (the copy inside the node
// binary, whose symbols Node exports for addons; it uses the CPU's SHA extensions), and
// HMAC is RFC 2104 on top of it, with no allocation. Results are written into a caller's
// buffer. Pure functions: no state, so any thread may call them.
#define NAPI_VERSION 8
// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, whose provider
// lookup per call costs more than the hash of a short message; they remain supported.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"

#define BLOCK 64
#define DIGEST 32

static void throw_arg(napi_env env, const char *msg) {
  napi_throw_type_error(env, "TESSERA_ERR_INVALID_ARGUMENT", msg);
}

// The bytes of a Uint8Array (or Buffer) argument; NULL with a pending exception otherwise.
static int bytes_of(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) goto bad;
  napi_typedarray_type type;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array) goto bad;
  *data = p;
  return 0;
bad: {
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be a Uint8Array", what);
  throw_arg(env, msg);
  return -1;
}
}

void tessera_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len, uint8_t out[DIGEST]) {
  uint8_t k0[BLOCK] = {0};
  uint8_t pad[BLOCK];
  SHA256_CTX c;
  if (key_len > BLOCK) {
    SHA256(key, key_len, k0);
  } else {
    memcpy(k0, key, key_len);
  }
  for (int i = 0; i < BLOCK; i++) pad[i] = k0[i] ^ 0x36;
  SHA256_Init(&c);
  SHA256_Update(&c, pad, BLOCK);
  SHA256_Update(&c, msg, msg_len);
  SHA256_Final(out, &c);
  for (int i = 0; i < BLOCK; i++) pad[i] = k0[i] ^ 0x5c;
  SHA256_Init(&c);
  SHA256_Update(&c, pad, BLOCK);
  SHA256_Update(&c, out, DIGEST);
  SHA256_Final(out, &c);
}

// Every function takes its output buffer last; it must hold at least 32 bytes.
static int out_of(napi_env env, napi_value v, uint8_t **out) {
  size_t len;
  if (bytes_of(env, v, "out", out, &len)) return -1;
  if (len < DIGEST) {
    throw_arg(env, "out must hold at least 32 bytes");
    return -1;
  }
  return 0;
}

// sha256(data, out): out[0..32) = SHA-256(data).
static napi_value js_sha256(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *data, *out;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    throw_arg(env, "sha256(data, out) takes two Uint8Arrays");
    return NULL;
  }
  if (bytes_of(env, argv[0], "data", &data, &len) || out_of(env, argv[1], &out)) return NULL;
  SHA256(data, len, out);
  return NULL;
}

// hmacSha256(key, data, out): out[0..32) = HMAC-SHA256(key, data).
static napi_value js_hmac(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *key, *data, *out;
  size_t key_len, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    throw_arg(env, "hmacSha256(key, data, out) takes three Uint8Arrays");
    return NULL;
  }
  if (bytes_of(env, argv[0], "key", &key, &key_len) || bytes_of(env, argv[1], "data", &data, &len) || out_of(env, argv[2], &out)) return NULL;
  tessera_hmac_sha256(key, key_len, data, len, out);
  return NULL;
}

// An HMAC key prepared once: the SHA-256 states after the inner and the outer pad block.
// Protocol v2 MACs many short messages under one pair key (fixed per peer pair), so half of
// each HMAC's compressions (the two pad blocks) are done once per key instead of per call.
typedef struct {
  SHA256_CTX inner;
  SHA256_CTX outer;
} hmac_state;

#define HMAC_STATE_BYTES ((int)sizeof(hmac_state))

void tessera_hmac_prepare(const uint8_t *key, size_t key_len, hmac_state *st) {
  uint8_t k0[BLOCK] = {0};
  uint8_t pad[BLOCK];
  if (key_len > BLOCK) {
    SHA256(key, key_len, k0);
  } else {
    memcpy(k0, key, key_len);
  }
  for (int i = 0; i < BLOCK; i++) pad[i] = k0[i] ^ 0x36;
  SHA256_Init(&st->inner);
  SHA256_Update(&st->inner, pad, BLOCK);
  for (int i = 0; i < BLOCK; i++) pad[i] = k0[i] ^ 0x5c;
  SHA256_Init(&st->outer);
  SHA256_Update(&st->outer, pad, BLOCK);
}

// The state's bytes as a JS Uint8Array of at least HMAC_STATE_BYTES (copied in and out with
// memcpy: a typed array's data need not be aligned for the struct).
static int state_of(napi_env env, napi_value v, uint8_t **p) {
  size_t len;
  if (bytes_of(env, v, "state", p, &len)) return -1;
  if (len < (size_t)HMAC_STATE_BYTES) {
    char msg[96];
    snprintf(msg, sizeof msg, "state must hold at least %d bytes (hmacStateBytes)", HMAC_STATE_BYTES);
    throw_arg(env, msg);
    return -1;
  }
  return 0;
}

// hmacPrepare(key, state): state = the key's prepared HMAC-SHA256 state (hmacStateBytes).
static napi_value js_hmac_prepare(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *key, *state;
  size_t key_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    throw_arg(env, "hmacPrepare(key, state) takes two Uint8Arrays");
    return NULL;
  }
  if (bytes_of(env, argv[0], "key", &key, &key_len) || state_of(env, argv[1], &state)) return NULL;
  hmac_state st;
  tessera_hmac_prepare(key, key_len, &st);
  memcpy(state, &st, sizeof st);
  return NULL;
}

// hmacPrepared(state, data, out): out[0..32) = HMAC-SHA256(key, data) for the key hmacPrepare
// prepared into state. A state that hmacPrepare did not write gives a wrong MAC, never a crash
// (SHA-256 over whatever bytes it holds; num is clamped below).
static napi_value js_hmac_prepared(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *state, *data, *out;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    throw_arg(env, "hmacPrepared(state, data, out) takes three Uint8Arrays");
    return NULL;
  }
  if (state_of(env, argv[0], &state) || bytes_of(env, argv[1], "data", &data, &len) || out_of(env, argv[2], &out)) return NULL;
  hmac_state st;
  memcpy(&st, state, sizeof st);
  // SHA256_Update indexes its block buffer by num and SHA256_Final writes md_len bytes: keep a
  // forged state's fields in range.
  st.inner.num &= BLOCK - 1;
  st.outer.num &= BLOCK - 1;
  st.inner.md_len = DIGEST;
  st.outer.md_len = DIGEST;
  SHA256_Update(&st.inner, data, len);
  SHA256_Final(out, &st.inner);
  SHA256_Update(&st.outer, out, DIGEST);
  SHA256_Final(out, &st.outer);
  return NULL;
}

int tessera_hash_init(napi_env env, napi_value exports) {
  napi_value state_bytes;
  if (napi_create_int32(env, HMAC_STATE_BYTES, &state_bytes) != napi_ok) return -1;
  napi_property_descriptor props[] = {
      {"sha256", NULL, js_sha256, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacSha256", NULL, js_hmac, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacPrepare", NULL, js_hmac_prepare, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacPrepared", NULL, js_hmac_prepared, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacStateBytes", NULL, NULL, NULL, NULL, state_bytes, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok ? 0 : -1;
}
