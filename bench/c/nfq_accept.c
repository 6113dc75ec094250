// The ceiling for any NFQUEUE handler: a minimal C accept-all consumer over
// libnetfilter_queue's libmnl API. Binds one queue number, copies each packet whole (as the
// real datapath must, to read and rewrite the handshake), and accepts it.
//   default: one NFQNL_MSG_VERDICT per packet
//   --batch: one NFQNL_MSG_VERDICT_BATCH per receive (accepts every id up to the last one)
// Prints "ready" on stdout once bound; on SIGTERM/SIGINT prints counters to stderr, exits 0.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static struct mnl_socket *nl;
static unsigned int portid;
static uint32_t queue_num;
static int batch;
static unsigned long long packets, verdict_msgs;
static uint32_t last_id;
static int have_last;

static void usage(void) {
  fprintf(stderr, "usage: nfq_accept --queue N [--batch] [--maxlen N]\n");
  exit(2);
}

static int send_verdict(int type, uint32_t id) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nfq_nlmsg_put(buf, type, queue_num);
  nfq_nlmsg_verdict_put(nlh, (int)id, NF_ACCEPT);
  verdict_msgs++;
  return mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0 ? -1 : 0;
}

static int queue_cb(const struct nlmsghdr *nlh, void *data) {
  (void)data;
  struct nlattr *attr[NFQA_MAX + 1] = {0};
  if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
  struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
  uint32_t id = ntohl(ph->packet_id);
  packets++;
  if (batch) {
    last_id = id;
    have_last = 1;
    return MNL_CB_OK;
  }
  if (send_verdict(NFQNL_MSG_VERDICT, id) < 0) perror("verdict");
  return MNL_CB_OK;
}

// Sends one config message and waits for the kernel's answer, so "ready" means the queue is
// really ours (BIND answers EBUSY when another process holds the queue number).
static int config(uint8_t cmd, int with_params, uint32_t maxlen) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nlh->nlmsg_flags |= NLM_F_ACK;
  if (cmd) nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, cmd);
  if (with_params) {
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
  }
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return -1;
  ssize_t r = mnl_socket_recvfrom(nl, buf, sizeof buf);
  if (r < 0) return -1;
  return mnl_cb_run(buf, (size_t)r, 0, portid, NULL, NULL) < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
  long q = -1;
  uint32_t maxlen = 4096;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--queue") && i + 1 < argc) q = strtol(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--maxlen") && i + 1 < argc) maxlen = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--batch")) batch = 1;
    else usage();
  }
  if (q < 0 || q > 65535) usage();
  queue_num = (uint32_t)q;

  // No SA_RESTART: a blocking recv must return EINTR so the loop sees the stop flag.
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl) { perror("mnl_socket_open"); return 1; }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) { perror("mnl_socket_bind"); return 1; }
  portid = mnl_socket_get_portid(nl);

  if (config(NFQNL_CFG_CMD_BIND, 0, 0) < 0) { perror("nfqueue bind"); return 1; }
  if (config(0, 1, maxlen) < 0) { perror("nfqueue params"); return 1; }

  // Overflowing the socket buffer must cost packets (counted by the kernel), not the socket.
  int one = 1;
  mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof one);
  int rcvbuf = 4 * 1024 * 1024;
  setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  printf("ready\n");
  fflush(stdout);

  size_t bufsz = 0xffff + (MNL_SOCKET_BUFFER_SIZE / 2);
  char *buf = malloc(bufsz);
  if (!buf) return 1;
  int fd = mnl_socket_get_fd(nl);
  while (!stop) {
    // The kernel sends one packet per netlink datagram: a batch is everything already
    // waiting after a wakeup (bounded), answered by one NFQNL_MSG_VERDICT_BATCH.
    have_last = 0;
    int failed = 0;
    for (int k = 0; k < (batch ? 64 : 1); k++) {
      ssize_t r = recv(fd, buf, bufsz, k == 0 ? 0 : MSG_DONTWAIT);
      if (r < 0) {
        if (errno != EINTR && errno != ENOBUFS && errno != EAGAIN) { perror("recv"); failed = 1; }
        break;
      }
      if (mnl_cb_run(buf, (size_t)r, 0, portid, queue_cb, NULL) < 0 && errno != EINTR) {
        perror("mnl_cb_run");
        failed = 1;
        break;
      }
    }
    if (batch && have_last && send_verdict(NFQNL_MSG_VERDICT_BATCH, last_id) < 0) perror("batch verdict");
    if (failed) break;
  }
  fprintf(stderr, "nfq_accept: queue %u, %llu packets, %llu verdict messages\n", queue_num, packets, verdict_msgs);
  mnl_socket_close(nl);
  free(buf);
  return 0;
}
