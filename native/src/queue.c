// NFQUEUE over libmnl: see queue.h. Every length read from netlink is checked against the
// bytes actually received (mnl_nlmsg_ok, nfq_nlmsg_parse/mnl_attr_parse, explicit sizes).
#define _GNU_SOURCE
#include "queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter/nfnetlink_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

// Netlink and nfqueue headers around the payload of one packet message: nlmsghdr, nfgenmsg,
// packet header, mark, timestamp, four ifindexes, hwaddr, cap_len, skb_info, uid, gid,
// conntrack and secctx would all fit in well under 4 KiB.
#define TQ_HEADROOM 4096
// Upper bound of one verdict message without its payload: nlmsghdr + nfgenmsg + verdict
// header + mark, each attribute aligned.
#define TQ_VERDICT_MAX_OVERHEAD 64
#define TQ_SEND_BUF_MIN (64 * 1024)

_Static_assert(TQ_DROP == NF_DROP && TQ_ACCEPT == NF_ACCEPT && TQ_QUEUE == NF_QUEUE && TQ_REPEAT == NF_REPEAT,
               "verdict constants");

size_t tq_slot_size(uint32_t copy_range) { return MNL_ALIGN((size_t)copy_range + TQ_HEADROOM); }

static int have_cap_net_admin(void) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof(data));
  if (syscall(SYS_capget, &hdr, data) != 0) return -1;
  return (data[CAP_NET_ADMIN / 32].effective >> (CAP_NET_ADMIN % 32)) & 1;
}

static void describe_config_error(const struct tq_queue *q, int e, char *err, size_t errlen) {
  switch (e) {
  case EPERM:
    if (have_cap_net_admin() == 0)
      snprintf(err, errlen, "binding NFQUEUE %u needs CAP_NET_ADMIN (run as root) (EPERM)", q->queue_num);
    else
      snprintf(err, errlen,
               "NFQUEUE %u is already bound by another socket or process in this network namespace (EPERM)",
               q->queue_num);
    break;
  case EBUSY:
    snprintf(err, errlen, "NFQUEUE %u is already bound by another process (EBUSY)", q->queue_num);
    break;
  case EAGAIN:
    snprintf(err, errlen, "the kernel did not answer the NFQUEUE %u configuration in time (EAGAIN)",
             q->queue_num);
    break;
  case EOPNOTSUPP:
    snprintf(err, errlen, "the kernel does not support a requested NFQUEUE %u flag (EOPNOTSUPP)",
             q->queue_num);
    break;
  default:
    snprintf(err, errlen,
             "the kernel refused to configure NFQUEUE %u: %s (errno %d; is the nfnetlink_queue module available?)",
             q->queue_num, strerror(e), e);
  }
}

// Builds an NFQNL_MSG_CONFIG message into buf (which must hold MNL_SOCKET_BUFFER_SIZE).
static struct nlmsghdr *put_config(char *buf, uint32_t queue_num, uint8_t cmd, uint32_t seq) {
  struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nlh->nlmsg_seq = seq;
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, cmd);
  return nlh;
}

static void queue_free_buffers(struct tq_queue *q) {
  free(q->msgs);
  free(q->iovs);
  free(q->sbuf);
  q->msgs = NULL;
  q->iovs = NULL;
  q->sbuf = NULL;
}

// Sends a packet seen during setup back through its hook (NF_REPEAT): it is queued again
// and reaches the consumer through the normal receive path instead of being lost.
static void repeat_setup_packet(struct tq_queue *q, const struct nlmsghdr *nlh) {
  struct nlattr *attr[NFQA_MAX + 1];
  memset(attr, 0, sizeof(attr));
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nfgenmsg)) return;
  if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return;
  const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
  tq_verdict(q, ntohl(ph->packet_id), NF_REPEAT, -1, NULL, 0);
}

// Waits (bounded by SO_RCVTIMEO) for the acknowledgement of message seq. Returns 0 or -errno.
static int wait_ack(struct tq_queue *q, uint32_t seq, uint8_t *buf, size_t buflen) {
  const uint16_t packet_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  for (int rounds = 0; rounds < 1024; rounds++) {
    ssize_t n = recv(q->fd, buf, buflen, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) continue;
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    size_t len = (size_t)n;
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
    while (mnl_nlmsg_ok(nlh, (int)len)) {
      if (nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_seq == seq) {
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nlmsgerr)) return -EPROTO;
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
        return e->error; // 0 = ack, else -errno
      }
      if (nlh->nlmsg_type == packet_type) repeat_setup_packet(q, nlh);
      int rest = (int)len;
      nlh = mnl_nlmsg_next(nlh, &rest);
      len = (size_t)rest;
    }
  }
  return -EPROTO;
}

int tq_open(struct tq_queue *q, const struct tq_options *o, uint8_t *rbuf, char *err, size_t errlen) {
  memset(q, 0, sizeof(*q));
  q->fd = -1;
  q->queue_num = o->queue_num;
  q->batch_size = o->batch_size;
  q->rbuf = rbuf;
  q->slot_size = tq_slot_size(o->copy_range);

  q->msgs = calloc(o->batch_size, sizeof(struct mmsghdr));
  q->iovs = calloc(o->batch_size, sizeof(struct iovec));
  q->scap = TQ_SEND_BUF_MIN;
  q->sbuf = malloc(q->scap);
  // Setup messages (acks, and packets racing them) are read into a scratch buffer.
  size_t cfglen = (size_t)MNL_SOCKET_BUFFER_SIZE > q->slot_size ? (size_t)MNL_SOCKET_BUFFER_SIZE : q->slot_size;
  uint8_t *cfgbuf = malloc(cfglen);
  if (!q->msgs || !q->iovs || !q->sbuf || !cfgbuf) {
    free(cfgbuf);
    queue_free_buffers(q);
    snprintf(err, errlen, "out of memory setting up NFQUEUE %u", o->queue_num);
    return -ENOMEM;
  }
  for (uint32_t i = 0; i < o->batch_size; i++) {
    q->iovs[i].iov_base = rbuf + (size_t)i * q->slot_size;
    q->iovs[i].iov_len = q->slot_size;
    q->msgs[i].msg_hdr.msg_iov = &q->iovs[i];
    q->msgs[i].msg_hdr.msg_iovlen = 1;
  }

  int rc;
  q->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (!q->nl) {
    rc = -errno;
    snprintf(err, errlen, "cannot open a netfilter netlink socket for NFQUEUE %u: %s", o->queue_num, strerror(-rc));
    goto fail;
  }
  if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot bind the netlink socket for NFQUEUE %u: %s", o->queue_num, strerror(-rc));
    goto fail;
  }
  q->fd = mnl_socket_get_fd(q->nl);

  // Overruns are counted by the kernel queue (and dropped there); an ENOBUFS error on our
  // socket would only interrupt the receive loop.
  int one = 1;
  setsockopt(q->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
  if (o->rcvbuf_bytes > 0) {
    int size = (int)o->rcvbuf_bytes;
    // SO_RCVBUFFORCE ignores rmem_max but needs CAP_NET_ADMIN; fall back to the capped one.
    if (setsockopt(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
      setsockopt(q->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  struct timeval tv = {2, 0};
  setsockopt(q->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  // One message binds and configures, so the queue never runs with the kernel's defaults
  // (copy mode NONE) and there is one acknowledgement to wait for. Since Linux 3.8 the
  // per-family PF_BIND commands are no-ops and one AF_UNSPEC bind serves IPv4 and IPv6.
  // NFQA_CFG_F_GSO is left unset on purpose: the kernel then segments GSO packets and
  // completes checksums before queueing, so the handlers see ordinary wire packets.
  uint32_t seq = 1;
  struct nlmsghdr *nlh = put_config((char *)cfgbuf, o->queue_num, NFQNL_CFG_CMD_BIND, seq);
  nlh->nlmsg_flags |= NLM_F_ACK;
  if (o->copy_range == 0)
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
  else
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)o->copy_range);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, o->max_len);
  // NFQA_CFG_F_FAIL_OPEN is cleared, never set: with it the kernel accepts, unjudged, every
  // packet that finds the queue full, so a flood would open the door to unauthorized
  // handshakes (issue #10, case 11). "Fail open when no reader is bound" is the rule's
  // --queue-bypass (the daemon's --fail-open), which a full queue does not trigger.
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(0));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
  if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0) {
    rc = -errno;
    describe_config_error(q, -rc, err, errlen);
    goto fail;
  }
  rc = wait_ack(q, seq, cfgbuf, cfglen);
  if (rc < 0) {
    describe_config_error(q, -rc, err, errlen);
    goto fail;
  }
  tq_flush(q); // REPEAT verdicts for packets that raced the acknowledgement, if any
  struct timeval zero = {0, 0};
  setsockopt(q->fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof(zero));
  free(cfgbuf);
  return 0;

fail:
  free(cfgbuf);
  if (q->nl) mnl_socket_close(q->nl);
  q->nl = NULL;
  q->fd = -1;
  queue_free_buffers(q);
  return rc;
}

int tq_flush(struct tq_queue *q) {
  if (q->slen == 0) return 0;
  if (!q->nl) return -EBADF;
  ssize_t n;
  do {
    n = mnl_socket_sendto(q->nl, q->sbuf, q->slen);
  } while (n < 0 && errno == EINTR);
  int rc = 0;
  if (n < 0) {
    rc = -errno;
    q->stats.send_errors += q->spending;
  } else {
    q->stats.verdicts += q->spending;
  }
  q->slen = 0;
  q->spending = 0;
  return rc;
}

int tq_verdict(struct tq_queue *q, uint32_t id, uint32_t verdict, int64_t mark, const uint8_t *payload,
               uint32_t payload_len) {
  if (!q->nl) return -EBADF;
  size_t need = TQ_VERDICT_MAX_OVERHEAD + (payload ? MNL_ALIGN((size_t)payload_len) + MNL_ATTR_HDRLEN : 0);
  if (q->slen + need > q->scap) {
    tq_flush(q);
    if (need > q->scap) {
      uint8_t *bigger = realloc(q->sbuf, need);
      if (!bigger) return -ENOMEM;
      q->sbuf = bigger;
      q->scap = need;
    }
  }
  struct nlmsghdr *nlh = nfq_nlmsg_put((char *)q->sbuf + q->slen, NFQNL_MSG_VERDICT, q->queue_num);
  nfq_nlmsg_verdict_put(nlh, (int)id, (int)verdict);
  if (mark >= 0) nfq_nlmsg_verdict_put_mark(nlh, (uint32_t)mark);
  if (payload) nfq_nlmsg_verdict_put_pkt(nlh, payload, payload_len);
  q->slen += MNL_ALIGN(nlh->nlmsg_len);
  q->spending++;
  return 0;
}

uint32_t tq_recv_batch(struct tq_queue *q, uint32_t *meta) {
  if (!q->nl) return 0;
  const uint16_t packet_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  int n;
  do {
    n = recvmmsg(q->fd, q->msgs, q->batch_size, MSG_DONTWAIT, NULL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ENOBUFS)
      q->stats.enobufs++;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      q->stats.recv_errors++;
    return 0;
  }

  uint32_t count = 0;
  for (int i = 0; i < n; i++) {
    uint8_t *base = q->rbuf + (size_t)i * q->slot_size;
    int len = (int)q->msgs[i].msg_len;
    if (q->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
      // Cannot happen with slot_size >= copy range + headroom; counted, not parsed.
      q->stats.recv_errors++;
      continue;
    }
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)base;
    while (mnl_nlmsg_ok(nlh, len)) {
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        // Verdicts are sent without NLM_F_ACK, so every error message is a failed verdict
        // (e.g. ENOENT for an id the kernel no longer holds).
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(struct nlmsgerr)) {
          const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
          if (e->error != 0) q->stats.send_errors++;
        }
      } else if (nlh->nlmsg_type == packet_type) {
        struct nlattr *attr[NFQA_MAX + 1];
        memset(attr, 0, sizeof(attr));
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nfgenmsg) || nfq_nlmsg_parse(nlh, attr) < 0 ||
            !attr[NFQA_PACKET_HDR]) {
          q->stats.recv_errors++;
        } else {
          const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
          uint32_t id = ntohl(ph->packet_id);
          q->stats.received++;
          if (count >= q->batch_size) {
            // More packet messages than meta rows (the kernel sends one per datagram, so
            // this needs a malformed stream): decide here rather than leave it queued, and
            // never let an unjudged packet through.
            q->stats.recv_errors++;
            tq_verdict(q, id, NF_DROP, -1, NULL, 0);
          } else {
            uint32_t *m = meta + (size_t)count * TQ_META_FIELDS;
            m[TQ_META_ID] = id;
            if (attr[NFQA_PAYLOAD]) {
              const uint8_t *p = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
              m[TQ_META_DATA_OFFSET] = (uint32_t)(p - q->rbuf);
              m[TQ_META_LENGTH] = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
            } else {
              m[TQ_META_DATA_OFFSET] = (uint32_t)(base - q->rbuf);
              m[TQ_META_LENGTH] = 0;
            }
            m[TQ_META_MARK] = attr[NFQA_MARK] ? ntohl(mnl_attr_get_u32(attr[NFQA_MARK])) : 0;
            m[TQ_META_HOOK] = ph->hook;
            m[TQ_META_INDEV] = attr[NFQA_IFINDEX_INDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
            m[TQ_META_OUTDEV] = attr[NFQA_IFINDEX_OUTDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_OUTDEV])) : 0;
            m[TQ_META_HW_PROTOCOL] = ntohs(ph->hw_protocol);
            count++;
          }
        }
      }
      // Anything else (NLMSG_DONE, NLMSG_NOOP, other subsystems) is ignored.
      nlh = mnl_nlmsg_next(nlh, &len);
    }
  }
  if (count > 0) q->stats.batches++;
  return count;
}

void tq_close(struct tq_queue *q) {
  if (q->nl) {
    tq_flush(q);
    // Closing the socket unbinds too (NETLINK_URELEASE); the explicit UNBIND makes the
    // queue number free again before close() returns, whatever else holds the fd.
    char buf[256];
    struct nlmsghdr *nlh = put_config(buf, q->queue_num, NFQNL_CFG_CMD_UNBIND, 0);
    mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len);
    mnl_socket_close(q->nl);
    q->nl = NULL;
    q->fd = -1;
  }
  queue_free_buffers(q);
  q->slen = 0;
  q->spending = 0;
}
