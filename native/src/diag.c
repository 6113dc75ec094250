// listeningSockets(): inode and port of every TCP socket in LISTEN state in the calling
// thread's network namespace, from an inet_diag dump over NETLINK_SOCK_DIAG.
//
// Why not /proc/net/tcp{,6}: reading them walks the established hash too (TIME_WAIT
// included), so with tens of thousands of closed connections one scan costs milliseconds of
// kernel CPU; /proc/net/tcp6 on a host without IPv6 listeners walks all of it to find
// nothing. With only TCPF_LISTEN in idiag_states the kernel walks only the listening hash
// (inet_diag_dump_icsk skips the established part when no other state is asked for).
//
// listeningSocketsCgroup(): the same dump with each socket's cgroup v2 id (INET_DIAG_CGROUP_ID,
// the inode number of the cgroup's directory): what `ss -Hltn --cgroup` prints, without a
// process per call (listener discovery, src/daemon/listener-sources.ts).
//
// Context-aware: no global or static state. Each call opens its own netlink socket (so it
// answers for the namespace the calling thread is in at that moment) and closes it.
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <libmnl/libmnl.h>
#include <node_api.h>

#include "diag.h"
#include "napi_errors.h"

#define CODE_DIAG "TESSERA_ERR_SOCK_DIAG"
// The kernel fills a dump skb of up to 32 KiB when the reader offers that much
// (MNL_SOCKET_DUMP_SIZE in newer libmnl); a smaller buffer would truncate (ENOSPC).
#define DIAG_BUF_SIZE 32768u

// Flat [inode, port, inode, port, ...], grown by doubling.
struct diag_vec {
  uint32_t *words;
  size_t len, cap;
};

static int vec_push(struct diag_vec *v, uint32_t inode, uint32_t port) {
  if (v->len + 4 > v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 128;
    uint32_t *w = realloc(v->words, cap * sizeof(*w));
    if (!w) return -ENOMEM;
    v->words = w;
    v->cap = cap;
  }
  v->words[v->len++] = inode;
  v->words[v->len++] = port;
  return 0;
}

// Sends one SOCK_DIAG_BY_FAMILY dump request and reads every part of the answer up to
// NLMSG_DONE. Returns 0 or -errno (the kernel's, from NLMSG_ERROR or NLMSG_DONE).
static int dump_family(struct mnl_socket *nl, uint32_t portid, uint8_t family, uint32_t seq, char *buf,
                       struct diag_vec *out, int cgroup) {
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req)); // zeroed
  req->sdiag_family = family;
  req->sdiag_protocol = IPPROTO_TCP;
  req->idiag_states = 1u << TCP_LISTEN;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return -errno;

  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl, buf, DIAG_BUF_SIZE); // ENOSPC: a message was truncated
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EPIPE;
    int len = (int)n;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      if (!mnl_nlmsg_seq_ok(h, seq) || !mnl_nlmsg_portid_ok(h, portid)) continue;
      // NLM_F_DUMP_INTR (the hash changed during the dump) is not an error here: like a
      // read of /proc/net/tcp, the answer is a snapshot and the next scan sees any change.
      if (h->nlmsg_type == NLMSG_DONE) {
        // A dump that failed part-way reports the error in NLMSG_DONE's payload.
        if (mnl_nlmsg_get_payload_len(h) >= sizeof(int)) {
          int e;
          memcpy(&e, mnl_nlmsg_get_payload(h), sizeof(e));
          if (e < 0) return e;
        }
        return 0;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (mnl_nlmsg_get_payload_len(h) < sizeof(struct nlmsgerr)) return -EBADMSG;
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
        return e->error < 0 ? e->error : 0;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue; // NLMSG_NOOP and the like
      if (mnl_nlmsg_get_payload_len(h) < sizeof(struct inet_diag_msg)) return -EBADMSG;
      const struct inet_diag_msg *m = mnl_nlmsg_get_payload(h);
      if (m->idiag_state != TCP_LISTEN) continue;
      int rc = vec_push(out, m->idiag_inode, ntohs(m->id.idiag_sport));
      if (rc < 0) return rc;
      if (cgroup) {
        // 0 when the kernel did not say (no CONFIG_SOCK_CGROUP_DATA): the caller falls back.
        uint64_t id = 0;
        const struct nlattr *a;
        mnl_attr_for_each(a, h, sizeof(*m)) {
          if (mnl_attr_get_type(a) == INET_DIAG_CGROUP_ID && mnl_attr_get_payload_len(a) >= sizeof(uint64_t)) {
            memcpy(&id, mnl_attr_get_payload(a), sizeof(id));
          }
        }
        // vec_push keeps room for four words.
        out->words[out->len++] = (uint32_t)(id & 0xffffffffu);
        out->words[out->len++] = (uint32_t)(id >> 32);
      }
    }
  }
}

// Both families, on one socket. Returns 0, or -errno with a message in err.
static int diag_listening(struct diag_vec *out, char *err, size_t errlen, int cgroup) {
  char *buf = malloc(DIAG_BUF_SIZE);
  if (!buf) {
    snprintf(err, errlen, "listeningSockets: out of memory");
    return -ENOMEM;
  }
  struct mnl_socket *nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    if (nl) mnl_socket_close(nl);
    free(buf);
    snprintf(err, errlen, "listeningSockets: cannot open a NETLINK_SOCK_DIAG socket: %s", strerror(e));
    return -e;
  }
  uint32_t portid = mnl_socket_get_portid(nl);
  const uint8_t families[] = {AF_INET, AF_INET6};
  int rc = 0;
  for (size_t i = 0; i < sizeof(families) && rc == 0; i++) {
    rc = dump_family(nl, portid, families[i], (uint32_t)i + 1, buf, out, cgroup);
    if (rc < 0)
      snprintf(err, errlen, "listeningSockets: sock_diag dump of %s TCP listeners failed: %s%s",
               families[i] == AF_INET ? "IPv4" : "IPv6", strerror(-rc),
               rc == -ENOENT ? " (no inet_diag/tcp_diag support in this kernel?)" : "");
  }
  mnl_socket_close(nl);
  free(buf);
  return rc;
}

// listeningSockets(): Uint32Array [inode, port, inode, port, ...]; IPv4 first, then IPv6.
// listeningSocketsCgroup(): [inode, port, cgroupIdLow, cgroupIdHigh, ...].
static napi_value listening_dump(napi_env env, int cgroup) {
  struct diag_vec v = {0};
  char err[256];
  int rc = diag_listening(&v, err, sizeof(err), cgroup);
  if (rc < 0) {
    free(v.words);
    tessera_throw_coded(env, CODE_DIAG, err, -rc);
    return NULL;
  }
  napi_value ab, arr = NULL;
  void *data = NULL;
  napi_status st = napi_create_arraybuffer(env, v.len * sizeof(uint32_t), &data, &ab);
  if (st == napi_ok) {
    if (v.len) memcpy(data, v.words, v.len * sizeof(uint32_t));
    st = napi_create_typedarray(env, napi_uint32_array, v.len, ab, 0, &arr);
  }
  free(v.words);
  if (st != napi_ok) {
    tessera_throw_last_error(env);
    return NULL;
  }
  return arr;
}

static napi_value listening_sockets(napi_env env, napi_callback_info info) {
  (void)info;
  return listening_dump(env, 0);
}

static napi_value listening_sockets_cgroup(napi_env env, napi_callback_info info) {
  (void)info;
  return listening_dump(env, 1);
}

// nftGeneration(): the nf_tables ruleset generation id of the calling thread's network
// namespace (NFT_MSG_GETGEN). Every committed nf_tables transaction moves it — nft's and
// iptables-nft's alike — so an unchanged id says nothing was changed since it was read: the
// reconcile loop's cheap check (src/rules/reconciler.ts) instead of listing the rules.
static napi_value nft_generation(napi_env env, napi_callback_info info) {
  (void)info;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  char err[256];
  struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    if (nl) mnl_socket_close(nl);
    snprintf(err, sizeof(err), "nftGeneration: cannot open a NETLINK_NETFILTER socket: %s", strerror(e));
    tessera_throw_coded(env, CODE_DIAG, err, e);
    return NULL;
  }
  uint32_t portid = mnl_socket_get_portid(nl);
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = 1;
  struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = 0;
  int64_t id = -1;
  int rc = 0;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) rc = -errno;
  while (rc == 0 && id < 0) {
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    int len = (int)n;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      if (!mnl_nlmsg_portid_ok(h, portid)) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
        rc = e->error < 0 ? e->error : -EBADMSG;
        break;
      }
      if (h->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
      const struct nlattr *a;
      mnl_attr_for_each(a, h, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) == NFTA_GEN_ID && mnl_attr_get_payload_len(a) >= sizeof(uint32_t)) id = ntohl(mnl_attr_get_u32(a));
      }
      if (id < 0) rc = -EBADMSG;
      break;
    }
  }
  mnl_socket_close(nl);
  if (rc < 0) {
    snprintf(err, sizeof(err), "nftGeneration: NFT_MSG_GETGEN failed: %s", strerror(-rc));
    tessera_throw_coded(env, CODE_DIAG, err, -rc);
    return NULL;
  }
  napi_value out;
  if (napi_create_uint32(env, (uint32_t)id, &out) != napi_ok) {
    tessera_throw_last_error(env);
    return NULL;
  }
  return out;
}

napi_status diag_init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_status st = napi_create_function(env, "listeningSockets", NAPI_AUTO_LENGTH, listening_sockets, NULL, &fn);
  if (st != napi_ok) return st;
  st = napi_set_named_property(env, exports, "listeningSockets", fn);
  if (st != napi_ok) return st;
  st = napi_create_function(env, "listeningSocketsCgroup", NAPI_AUTO_LENGTH, listening_sockets_cgroup, NULL, &fn);
  if (st != napi_ok) return st;
  st = napi_set_named_property(env, exports, "listeningSocketsCgroup", fn);
  if (st != napi_ok) return st;
  st = napi_create_function(env, "nftGeneration", NAPI_AUTO_LENGTH, nft_generation, NULL, &fn);
  if (st != napi_ok) return st;
  return napi_set_named_property(env, exports, "nftGeneration", fn);
}
