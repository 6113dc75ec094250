// See napi_errors.h.
#define NAPI_VERSION 8
#include "napi_errors.h"

void tessera_throw_last_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "Node-API call failed");
}

void tessera_throw_coded(napi_env env, const char *code, const char *msg, int err) {
  napi_value code_value, message, error, errno_value;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) != napi_ok) return;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok) return;
  if (napi_create_error(env, code_value, message, &error) != napi_ok) return;
  if (err != 0 && napi_create_int32(env, err, &errno_value) == napi_ok)
    napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
}
