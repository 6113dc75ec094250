// Raw IP sockets for the UDP exchange's control packets (src/datapath/udp/sender.ts), created
// in a given network namespace: a bridge container's Reply and Confirm must leave from inside
// its namespace (its address, its conntrack, its routes), as its own datagrams do.
//
//   rawSocket(family 4|6, netns?: string, mark?: number) -> fd
//   rawSend(fd, packet: Uint8Array, length?) -> bytes sent, or -errno
//   rawClose(fd)
//
// The socket is IPPROTO_RAW (send-only: the kernel never delivers anything to it), the IP
// header the caller's (IPv4: implied; IPv6: IPV6_HDRINCL), non-blocking. As in queue.c, the
// calling thread enters the namespace (setns CLONE_NEWNET) only to create the socket, then
// returns: the socket stays in the namespace it was made in, and keeps it alive until closed.
// `mark` sets SO_MARK, by which the namespace's rules tell our control packets from the
// container's own (docs/rules.md). Context-aware: no global state; fds are the caller's.
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <node_api.h>

#include "napi_errors.h"
#include "raw.h"

#define CODE_ARG "TESSERA_ERR_INVALID_ARGUMENT"
#define CODE_RAW "TESSERA_ERR_RAW_SOCKET"
#ifndef IPV6_HDRINCL
#define IPV6_HDRINCL 36
#endif

static int open_raw(int family, uint32_t mark, int set_mark) {
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return -errno;
  int one = 1;
  if (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_HDRINCL, &one, sizeof(one)) < 0) goto fail;
  if (set_mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) goto fail;
  return fd;
fail: {
  int e = errno;
  close(fd);
  return -e;
}
}

static napi_value raw_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t family = 0;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6)) {
    napi_throw_type_error(env, CODE_ARG, "rawSocket: family must be 4 or 6");
    return NULL;
  }
  char netns[4096];
  netns[0] = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_string) {
    size_t n = 0;
    if (napi_get_value_string_utf8(env, argv[1], netns, sizeof(netns), &n) != napi_ok || n == 0 || n >= sizeof(netns) - 1) {
      napi_throw_type_error(env, CODE_ARG, "rawSocket: netns must be a non-empty path to a network namespace file");
      return NULL;
    }
  } else if (t != napi_undefined && t != napi_null) {
    napi_throw_type_error(env, CODE_ARG, "rawSocket: netns must be a string or undefined");
    return NULL;
  }
  uint32_t mark = 0;
  int set_mark = 0;
  t = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &t);
  if (t == napi_number) {
    if (napi_get_value_uint32(env, argv[2], &mark) != napi_ok) return NULL;
    set_mark = 1;
  } else if (t != napi_undefined) {
    napi_throw_type_error(env, CODE_ARG, "rawSocket: mark must be a number or undefined");
    return NULL;
  }

  char err[300];
  int fd;
  if (netns[0]) {
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = home < 0 ? -1 : open(netns, O_RDONLY | O_CLOEXEC);
    if (home < 0 || target < 0) {
      int e = errno;
      if (home >= 0) close(home);
      snprintf(err, sizeof(err), "raw socket: cannot open network namespace %s: %s", home < 0 ? "/proc/thread-self/ns/net" : netns, strerror(e));
      tessera_throw_coded(env, CODE_RAW, err, e);
      return NULL;
    }
    if (setns(target, CLONE_NEWNET) < 0) {
      int e = errno;
      close(home);
      close(target);
      snprintf(err, sizeof(err), "raw socket: cannot enter network namespace %s: %s", netns, strerror(e));
      tessera_throw_coded(env, CODE_RAW, err, e);
      return NULL;
    }
    close(target);
    fd = open_raw(family, mark, set_mark);
    if (setns(home, CLONE_NEWNET) < 0) {
      // Everything this thread opened later would live in a container's namespace.
      fprintf(stderr, "tessera_nfq: cannot return to the original network namespace: %s\n", strerror(errno));
      abort();
    }
    close(home);
  } else {
    fd = open_raw(family, mark, set_mark);
  }
  if (fd < 0) {
    snprintf(err, sizeof(err), "raw socket (IPv%d%s%s): %s", family, netns[0] ? ", netns " : "", netns, strerror(-fd));
    tessera_throw_coded(env, CODE_RAW, err, -fd);
    return NULL;
  }
  napi_value out;
  if (napi_create_int32(env, fd, &out) != napi_ok) {
    close(fd);
    tessera_throw_last_error(env);
    return NULL;
  }
  return out;
}

// The destination is the packet's own (IPv4 bytes 16..19, IPv6 24..39).
static napi_value raw_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd = -1;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, CODE_ARG, "rawSend: fd must be a socket from rawSocket");
    return NULL;
  }
  bool is = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, CODE_ARG, "rawSend: packet must be a Uint8Array");
    return NULL;
  }
  if (argc >= 3) {
    napi_valuetype t;
    uint32_t n = 0;
    if (napi_typeof(env, argv[2], &t) == napi_ok && t == napi_number && napi_get_value_uint32(env, argv[2], &n) == napi_ok && n < len) len = n;
  }
  const uint8_t *p = data;
  ssize_t rc;
  if (len >= 20 && (p[0] >> 4) == 4) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    memcpy(&sa.sin_addr, p + 16, 4);
    rc = sendto(fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));
  } else if (len >= 40 && (p[0] >> 4) == 6) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    memcpy(&sa.sin6_addr, p + 24, 16);
    rc = sendto(fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));
  } else {
    rc = -1;
    errno = EINVAL;
  }
  napi_value out;
  if (napi_create_int32(env, rc < 0 ? -errno : (int32_t)rc, &out) != napi_ok) return NULL;
  return out;
}

static napi_value raw_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, CODE_ARG, "rawClose: fd must be a socket from rawSocket");
    return NULL;
  }
  close(fd);
  return NULL;
}

napi_status raw_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"rawSocket", raw_socket}, {"rawSend", raw_send}, {"rawClose", raw_close}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value fn;
    napi_status st = napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn);
    if (st != napi_ok) return st;
    st = napi_set_named_property(env, exports, fns[i].name, fn);
    if (st != napi_ok) return st;
  }
  return napi_ok;
}
