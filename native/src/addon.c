// Node-API side of the NFQUEUE addon: the Queue class, a uv_poll on the owning thread's
// loop, and teardown that works for close(), garbage collection and worker exit alike.
//
// Context-aware: no global or static state. Each Queue keeps what it needs in its own
// struct, and the module's per-env data lives in napi_set_instance_data, so the addon loads
// and runs in any number of worker_threads at once.
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <math.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "hash.h"
#include "napi_errors.h"
#include "diag.h"
#include "raw.h"
#include "queue.h"

#define CODE_QUEUE "TESSERA_ERR_QUEUE"
#define CODE_ARG "TESSERA_ERR_INVALID_ARGUMENT"

#define DEFAULT_MAX_LEN 4096u
#define DEFAULT_COPY_RANGE 0xffffu
#define DEFAULT_BATCH 64u
#define MAX_BATCH 1024u
#define DEFAULT_RCVBUF (8u * 1024u * 1024u)

// Returns from the calling function with NULL (a pending exception) when a call fails.
#define NAPI_CALL(env, call)                                                                                 \
  do {                                                                                                       \
    if ((call) != napi_ok) {                                                                                 \
      throw_last_error(env);                                                                                 \
      return NULL;                                                                                           \
    }                                                                                                        \
  } while (0)

struct addon_data {
  uint64_t queues_opened; // per env, for debugging and to prove instance data is per env
};

struct nq {
  napi_env env;
  struct tq_queue tq;
  uv_poll_t poll;
  napi_ref self_ref; // strong while open: an open queue is a live resource, like a socket
  napi_ref cb_ref;
  napi_ref meta_ref;
  napi_ref data_ref;
  napi_async_context async_ctx;
  napi_async_cleanup_hook_handle cleanup_handle;
  uint32_t *meta;
  int open;            // tq_open succeeded and close() has not run
  int poll_started;    // uv_poll_init succeeded: the handle must be uv_close()d
  int handle_closed;   // the uv close callback ran (or the handle was never initialized)
  int finalized;       // the JS object is gone
  int in_batch;        // inside onBatch: verdicts are queued, sent after it returns
  int in_cleanup_hook; // close runs from the env cleanup hook: remove it once the handle closed
};

static void throw_last_error(napi_env env) { tessera_throw_last_error(env); }

static void throw_queue_error(napi_env env, const char *msg, int err) { tessera_throw_coded(env, CODE_QUEUE, msg, err); }

static void maybe_free(struct nq *q) {
  if (q->finalized && q->handle_closed && !q->in_batch) free(q);
}

static void on_poll_closed(uv_handle_t *handle) {
  struct nq *q = handle->data;
  q->handle_closed = 1;
  if (q->in_cleanup_hook) {
    // The env waits for this call before it goes on tearing down.
    napi_remove_async_cleanup_hook(q->cleanup_handle);
    q->cleanup_handle = NULL;
  }
  maybe_free(q);
}

// Releases everything the queue holds. Safe to call more than once and from onBatch.
static void queue_close(struct nq *q, int from_cleanup_hook) {
  if (!q->open) return;
  q->open = 0;
  napi_env env = q->env;
  // Stop polling before the fd goes away, then flush, unbind and close the socket.
  if (q->poll_started) uv_poll_stop(&q->poll);
  tq_close(&q->tq);
  if (q->cleanup_handle && !from_cleanup_hook) {
    napi_remove_async_cleanup_hook(q->cleanup_handle);
    q->cleanup_handle = NULL;
  }
  q->in_cleanup_hook = from_cleanup_hook && q->cleanup_handle != NULL;
  if (q->async_ctx) {
    napi_async_destroy(env, q->async_ctx);
    q->async_ctx = NULL;
  }
  if (q->cb_ref) napi_delete_reference(env, q->cb_ref);
  if (q->meta_ref) napi_delete_reference(env, q->meta_ref);
  if (q->data_ref) napi_delete_reference(env, q->data_ref);
  if (q->self_ref) napi_delete_reference(env, q->self_ref);
  q->cb_ref = q->meta_ref = q->data_ref = q->self_ref = NULL;
  q->meta = NULL;
  if (q->poll_started) {
    uv_close((uv_handle_t *)&q->poll, on_poll_closed);
  } else {
    q->handle_closed = 1;
    if (q->in_cleanup_hook) {
      napi_remove_async_cleanup_hook(q->cleanup_handle);
      q->cleanup_handle = NULL;
    }
  }
}

static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  struct nq *q = arg;
  (void)handle;
  queue_close(q, 1);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  struct nq *q = data;
  (void)env;
  (void)hint;
  q->finalized = 1;
  queue_close(q, 0); // only reachable while open at env teardown: open queues are held strongly
  if (!q->poll_started) q->handle_closed = 1;
  maybe_free(q);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  struct nq *q = handle->data;
  (void)events;
  if (!q->open) return;
  if (status < 0) {
    q->tq.stats.recv_errors++;
    return;
  }
  napi_env env = q->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;

  uint32_t count = tq_recv_batch(&q->tq, q->meta);
  napi_value exception = NULL;
  if (count > 0) {
    napi_value self, cb, argv[1];
    if (napi_get_reference_value(env, q->self_ref, &self) == napi_ok &&
        napi_get_reference_value(env, q->cb_ref, &cb) == napi_ok &&
        napi_create_uint32(env, count, &argv[0]) == napi_ok) {
      q->in_batch = 1;
      napi_status st = napi_make_callback(env, q->async_ctx, self, cb, 1, argv, NULL);
      q->in_batch = 0;
      if (st != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) napi_get_and_clear_last_exception(env, &exception);
      }
    }
  }
  // Verdicts given inside onBatch (and any the receive path queued) go out in one sendto,
  // also when onBatch threw: the ones it did give must not be lost.
  if (q->open) {
    if (tq_flush(&q->tq) < 0) { /* counted in stats.sendErrors */
    }
  }
  if (exception) napi_fatal_exception(env, exception);
  napi_close_handle_scope(env, scope);
  if (!q->open) maybe_free(q);
}

// ---- argument parsing ----

// Reads options[name] as an integer in [min, max]; absent/undefined gives def.
// Returns 0, or -1 with a TypeError thrown.
static int get_uint_option(napi_env env, napi_value obj, const char *name, double min, double max, uint32_t def,
                           uint32_t *out) {
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return -1;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined) {
    *out = def;
    return 0;
  }
  double d = NAN;
  if (t == napi_number) napi_get_value_double(env, v, &d);
  if (t != napi_number || !isfinite(d) || floor(d) != d || d < min || d > max) {
    char msg[160];
    snprintf(msg, sizeof(msg), "options.%s must be an integer from %.0f to %.0f", name, min, max);
    napi_throw_type_error(env, CODE_ARG, msg);
    return -1;
  }
  *out = (uint32_t)d;
  return 0;
}

static napi_value queue_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target;
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (!target) {
    napi_throw_type_error(env, CODE_ARG, "Queue must be called with new");
    return NULL;
  }
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 1) NAPI_CALL(env, napi_typeof(env, argv[0], &t0));
  if (argc >= 2) NAPI_CALL(env, napi_typeof(env, argv[1], &t1));
  if (t0 != napi_object) {
    napi_throw_type_error(env, CODE_ARG, "new Queue(options, onBatch): options must be an object");
    return NULL;
  }
  if (t1 != napi_function) {
    napi_throw_type_error(env, CODE_ARG, "new Queue(options, onBatch): onBatch must be a function");
    return NULL;
  }

  struct tq_options o;
  memset(&o, 0, sizeof(o));
  napi_value fo;
  napi_valuetype tf;
  if (get_uint_option(env, argv[0], "queueNum", 0, 65535, 0x10000, &o.queue_num) < 0) return NULL;
  if (o.queue_num == 0x10000) {
    napi_throw_type_error(env, CODE_ARG, "options.queueNum is required (an integer from 0 to 65535)");
    return NULL;
  }
  if (get_uint_option(env, argv[0], "maxLen", 1, 2147483647.0, DEFAULT_MAX_LEN, &o.max_len) < 0) return NULL;
  if (get_uint_option(env, argv[0], "copyRange", 0, 65535, DEFAULT_COPY_RANGE, &o.copy_range) < 0) return NULL;
  if (get_uint_option(env, argv[0], "batchSize", 1, MAX_BATCH, DEFAULT_BATCH, &o.batch_size) < 0) return NULL;
  if (get_uint_option(env, argv[0], "rcvBufBytes", 0, 1073741824.0, DEFAULT_RCVBUF, &o.rcvbuf_bytes) < 0)
    return NULL;
  // options.failOpen is still type-checked for old callers but means nothing: a full queue
  // always drops (queue.c). Failing open when no reader is bound is the rule's --queue-bypass.
  NAPI_CALL(env, napi_get_named_property(env, argv[0], "failOpen", &fo));
  NAPI_CALL(env, napi_typeof(env, fo, &tf));
  if (tf != napi_boolean && tf != napi_undefined) {
    napi_throw_type_error(env, CODE_ARG, "options.failOpen must be a boolean");
    return NULL;
  }

  // options.netns: path of a network namespace file (/var/run/docker/netns/<id>,
  // /run/netns/<name>). The socket is created and bound there, then this thread goes home:
  // a socket stays in the namespace it was created in, so one thread can own queues in
  // many namespaces (docs/docker.md). Queue numbers are per namespace.
  char netns[4096];
  netns[0] = 0;
  NAPI_CALL(env, napi_get_named_property(env, argv[0], "netns", &fo));
  NAPI_CALL(env, napi_typeof(env, fo, &tf));
  if (tf == napi_string) {
    size_t n = 0;
    NAPI_CALL(env, napi_get_value_string_utf8(env, fo, netns, sizeof(netns), &n));
    if (n == 0 || n >= sizeof(netns) - 1) {
      napi_throw_type_error(env, CODE_ARG, "options.netns must be a non-empty path to a network namespace file");
      return NULL;
    }
  } else if (tf != napi_undefined) {
    napi_throw_type_error(env, CODE_ARG, "options.netns must be a string (path to a network namespace file)");
    return NULL;
  }

  // JS-visible buffers first: the kernel writes packets straight into `data`.
  size_t slot = tq_slot_size(o.copy_range);
  napi_value meta_ab, meta, data;
  void *meta_ptr = NULL, *data_ptr = NULL;
  NAPI_CALL(env, napi_create_arraybuffer(env, (size_t)o.batch_size * TQ_META_FIELDS * sizeof(uint32_t), &meta_ptr,
                                         &meta_ab));
  NAPI_CALL(env, napi_create_typedarray(env, napi_uint32_array, (size_t)o.batch_size * TQ_META_FIELDS, meta_ab, 0,
                                        &meta));
  NAPI_CALL(env, napi_create_buffer(env, (size_t)o.batch_size * slot, &data_ptr, &data));

  struct nq *q = calloc(1, sizeof(*q));
  if (!q) {
    throw_queue_error(env, "out of memory", ENOMEM);
    return NULL;
  }
  q->env = env;
  q->meta = meta_ptr;
  q->handle_closed = 1; // until uv_poll_init succeeds

  char err[256];
  int rc;
  if (netns[0]) {
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = home < 0 ? -1 : open(netns, O_RDONLY | O_CLOEXEC);
    if (home < 0 || target < 0) {
      int e = errno;
      if (home >= 0) close(home);
      free(q);
      snprintf(err, sizeof(err), "NFQUEUE %u: cannot open network namespace %s: %s", o.queue_num,
               home < 0 ? "/proc/thread-self/ns/net" : netns, strerror(e));
      throw_queue_error(env, err, e);
      return NULL;
    }
    if (setns(target, CLONE_NEWNET) < 0) {
      int e = errno;
      close(home);
      close(target);
      free(q);
      snprintf(err, sizeof(err), "NFQUEUE %u: cannot enter network namespace %s: %s", o.queue_num, netns,
               strerror(e));
      throw_queue_error(env, err, e);
      return NULL;
    }
    close(target);
    rc = tq_open(&q->tq, &o, data_ptr, err, sizeof(err));
    if (setns(home, CLONE_NEWNET) < 0) {
      // The thread would stay in a container's namespace: everything it opened later would
      // live there. Nothing sane can continue on this thread.
      fprintf(stderr, "tessera_nfq: cannot return to the original network namespace: %s\n", strerror(errno));
      abort();
    }
    close(home);
  } else {
    rc = tq_open(&q->tq, &o, data_ptr, err, sizeof(err));
  }
  if (rc < 0) {
    free(q);
    throw_queue_error(env, err, -rc);
    return NULL;
  }
  q->open = 1;

  // Everything below can fail only on Node-API/libuv errors; on failure close and throw.
  napi_value name;
  uv_loop_t *loop = NULL;
  int ok = napi_wrap(env, self, q, on_finalize, NULL, NULL) == napi_ok;
  if (!ok) {
    tq_close(&q->tq);
    free(q);
    throw_last_error(env);
    return NULL;
  }
  ok = napi_create_reference(env, self, 1, &q->self_ref) == napi_ok &&
       napi_create_reference(env, argv[1], 1, &q->cb_ref) == napi_ok &&
       napi_create_reference(env, meta, 1, &q->meta_ref) == napi_ok &&
       napi_create_reference(env, data, 1, &q->data_ref) == napi_ok &&
       napi_create_string_utf8(env, "TesseraNfqueue", NAPI_AUTO_LENGTH, &name) == napi_ok &&
       napi_async_init(env, self, name, &q->async_ctx) == napi_ok &&
       napi_add_async_cleanup_hook(env, on_env_cleanup, q, &q->cleanup_handle) == napi_ok &&
       napi_get_uv_event_loop(env, &loop) == napi_ok;
  if (ok) {
    napi_property_descriptor props[] = {
        {"meta", NULL, NULL, NULL, NULL, meta, napi_enumerable, NULL},
        {"data", NULL, NULL, NULL, NULL, data, napi_enumerable, NULL},
    };
    ok = napi_define_properties(env, self, 2, props) == napi_ok;
  }
  if (ok) {
    rc = uv_poll_init(loop, &q->poll, q->tq.fd);
    if (rc == 0) {
      q->poll.data = q;
      q->poll_started = 1;
      q->handle_closed = 0;
      rc = uv_poll_start(&q->poll, UV_READABLE, on_readable);
    }
    if (rc != 0) {
      char msg[200];
      snprintf(msg, sizeof(msg), "cannot poll NFQUEUE %u: %s", o.queue_num, uv_strerror(rc));
      queue_close(q, 0);
      throw_queue_error(env, msg, -rc);
      return NULL;
    }
  } else {
    queue_close(q, 0);
    throw_last_error(env);
    return NULL;
  }

  struct addon_data *ad = NULL;
  if (napi_get_instance_data(env, (void **)&ad) == napi_ok && ad) ad->queues_opened++;
  return self;
}

static struct nq *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *ptr = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &ptr) != napi_ok || !ptr) {
    napi_throw_type_error(env, CODE_ARG, "not a Queue");
    return NULL;
  }
  return ptr;
}

static napi_value queue_verdict(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  struct nq *q = unwrap_this(env, info, &argc, argv);
  if (!q) return NULL;
  if (!q->open) {
    throw_queue_error(env, "verdict() on a closed queue", EBADF);
    return NULL;
  }
  napi_valuetype t[5] = {napi_undefined, napi_undefined, napi_undefined, napi_undefined, napi_undefined};
  for (size_t i = 0; i < argc && i < 5; i++) NAPI_CALL(env, napi_typeof(env, argv[i], &t[i]));

  double id = NAN, verdict = NAN, mark = -1;
  if (t[0] == napi_number) NAPI_CALL(env, napi_get_value_double(env, argv[0], &id));
  if (t[1] == napi_number) NAPI_CALL(env, napi_get_value_double(env, argv[1], &verdict));
  if (!(id >= 0 && id <= 4294967295.0 && floor(id) == id)) {
    napi_throw_type_error(env, CODE_ARG, "verdict(id, ...): id must be a packet id (uint32)");
    return NULL;
  }
  // TQ_QUEUE carries a target queue number in the upper 16 bits; others must be bare.
  uint32_t v = 0;
  int verdict_ok = verdict >= 0 && verdict <= 4294967295.0 && floor(verdict) == verdict;
  if (verdict_ok) {
    v = (uint32_t)verdict;
    uint32_t base = v & 0xffff;
    verdict_ok = base == TQ_DROP || base == TQ_ACCEPT || base == TQ_REPEAT || base == TQ_QUEUE;
    if (base != TQ_QUEUE && (v >> 16) != 0) verdict_ok = 0;
  }
  if (!verdict_ok) {
    napi_throw_type_error(env, CODE_ARG, "verdict(id, verdict): verdict must be VERDICT.DROP, ACCEPT or REPEAT");
    return NULL;
  }
  if (t[2] == napi_number) {
    NAPI_CALL(env, napi_get_value_double(env, argv[2], &mark));
    if (!(mark == -1 || (mark >= 0 && mark <= 4294967295.0 && floor(mark) == mark))) {
      napi_throw_type_error(env, CODE_ARG, "verdict(..., mark): mark must be a uint32, or -1 to keep it");
      return NULL;
    }
  } else if (t[2] != napi_undefined && t[2] != napi_null) {
    napi_throw_type_error(env, CODE_ARG, "verdict(..., mark): mark must be a number");
    return NULL;
  }

  const uint8_t *payload = NULL;
  uint32_t payload_len = 0;
  if (t[3] != napi_undefined && t[3] != napi_null) {
    bool is_ta = false;
    NAPI_CALL(env, napi_is_typedarray(env, argv[3], &is_ta));
    napi_typedarray_type tat;
    size_t length = 0, offset = 0;
    void *ptr = NULL;
    if (is_ta) NAPI_CALL(env, napi_get_typedarray_info(env, argv[3], &tat, &length, &ptr, NULL, &offset));
    if (!is_ta || tat != napi_uint8_array) {
      napi_throw_type_error(env, CODE_ARG, "verdict(..., payload): payload must be a Uint8Array or Buffer");
      return NULL;
    }
    double plen = (double)length;
    if (t[4] == napi_number) {
      NAPI_CALL(env, napi_get_value_double(env, argv[4], &plen));
      if (!(plen >= 0 && plen <= (double)length && floor(plen) == plen)) {
        napi_throw_type_error(env, CODE_ARG, "verdict(..., payloadLength): must be an integer within the payload");
        return NULL;
      }
    } else if (t[4] != napi_undefined) {
      napi_throw_type_error(env, CODE_ARG, "verdict(..., payloadLength): must be a number");
      return NULL;
    }
    if (plen > 65535) {
      napi_throw_type_error(env, CODE_ARG, "verdict(..., payload): a packet is at most 65535 bytes");
      return NULL;
    }
    payload = ptr ? ptr : (const uint8_t *)"";
    payload_len = (uint32_t)plen;
  }

  int rc = tq_verdict(&q->tq, (uint32_t)id, v, (int64_t)mark, payload, payload_len);
  if (rc == 0 && !q->in_batch) rc = tq_flush(&q->tq);
  if (rc == -ENOMEM) {
    throw_queue_error(env, "out of memory queueing a verdict", ENOMEM);
    return NULL;
  }
  // Send failures are counted in stats().sendErrors: the hot path does not throw for them.
  return NULL;
}

static napi_value queue_flush(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct nq *q = unwrap_this(env, info, &argc, NULL);
  if (!q) return NULL;
  if (q->open) tq_flush(&q->tq);
  return NULL;
}

static napi_value queue_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct nq *q = unwrap_this(env, info, &argc, NULL);
  if (!q) return NULL;
  queue_close(q, 0);
  return NULL;
}

static int set_count(napi_env env, napi_value obj, const char *name, uint64_t v) {
  napi_value n;
  if (napi_create_double(env, (double)v, &n) != napi_ok) return -1;
  return napi_set_named_property(env, obj, name, n) == napi_ok ? 0 : -1;
}

static napi_value queue_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct nq *q = unwrap_this(env, info, &argc, NULL);
  if (!q) return NULL;
  napi_value obj;
  NAPI_CALL(env, napi_create_object(env, &obj));
  const struct tq_stats *s = &q->tq.stats;
  if (set_count(env, obj, "received", s->received) || set_count(env, obj, "verdicts", s->verdicts) ||
      set_count(env, obj, "sendErrors", s->send_errors) || set_count(env, obj, "recvErrors", s->recv_errors) ||
      set_count(env, obj, "enobufs", s->enobufs) || set_count(env, obj, "batches", s->batches)) {
    throw_last_error(env);
    return NULL;
  }
  return obj;
}

static void addon_data_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static int put_u32(napi_env env, napi_value obj, const char *name, uint32_t v) {
  napi_value n;
  if (napi_create_uint32(env, v, &n) != napi_ok) return -1;
  return napi_set_named_property(env, obj, name, n) == napi_ok ? 0 : -1;
}

NAPI_MODULE_INIT() {
  struct addon_data *ad = calloc(1, sizeof(*ad));
  if (!ad || napi_set_instance_data(env, ad, addon_data_finalize, NULL) != napi_ok) {
    free(ad);
    napi_throw_error(env, NULL, "tessera_nfq: cannot set instance data");
    return NULL;
  }
  napi_property_descriptor methods[] = {
      {"verdict", NULL, queue_verdict, NULL, NULL, NULL, napi_default_method, NULL},
      {"flush", NULL, queue_flush, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, queue_close_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, queue_stats, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls, verdicts;
  NAPI_CALL(env, napi_define_class(env, "Queue", NAPI_AUTO_LENGTH, queue_new, NULL,
                                   sizeof(methods) / sizeof(methods[0]), methods, &cls));
  NAPI_CALL(env, napi_create_object(env, &verdicts));
  if (put_u32(env, verdicts, "DROP", TQ_DROP) || put_u32(env, verdicts, "ACCEPT", TQ_ACCEPT) ||
      put_u32(env, verdicts, "REPEAT", TQ_REPEAT) || put_u32(env, exports, "META_FIELDS", TQ_META_FIELDS)) {
    throw_last_error(env);
    return NULL;
  }
  NAPI_CALL(env, napi_object_freeze(env, verdicts));
  NAPI_CALL(env, napi_set_named_property(env, exports, "Queue", cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "VERDICT", verdicts));
  if (tessera_hash_init(env, exports)) return NULL;
  NAPI_CALL(env, diag_init(env, exports));
  NAPI_CALL(env, raw_init(env, exports));
  return exports;
}
