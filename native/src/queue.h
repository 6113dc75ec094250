// One NFQUEUE consumer over a libmnl netlink socket: bind and configure, batch receive,
// batch verdicts. Plain C with no Node-API so the netlink logic can be read (and reasoned
// about) on its own; addon.c owns the JS side. No process-wide state: everything lives in
// struct tq_queue, so any number of queues can run in any number of threads.
#ifndef TESSERA_NFQ_QUEUE_H
#define TESSERA_NFQ_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

// Fields per packet in the meta array (index.d.ts documents the same layout).
enum {
  TQ_META_ID = 0,
  TQ_META_DATA_OFFSET = 1,
  TQ_META_LENGTH = 2,
  TQ_META_MARK = 3,
  TQ_META_HOOK = 4,
  TQ_META_INDEV = 5,
  TQ_META_OUTDEV = 6,
  TQ_META_HW_PROTOCOL = 7,
  TQ_META_FIELDS = 8
};

// Verdict values (linux/netfilter.h NF_*), repeated here so addon.c need not include kernel
// headers that clash with libuv's <netinet/in.h>. queue.c checks they match.
enum { TQ_DROP = 0, TQ_ACCEPT = 1, TQ_QUEUE = 3, TQ_REPEAT = 4 };

struct tq_options {
  uint32_t queue_num;
  uint32_t max_len;
  uint32_t copy_range; // 0 = metadata only
  uint32_t batch_size;
  uint32_t rcvbuf_bytes; // 0 = leave the system default
};

struct tq_stats {
  uint64_t received;
  uint64_t verdicts;
  uint64_t send_errors;
  uint64_t recv_errors;
  uint64_t enobufs;
  uint64_t batches;
};

struct mnl_socket;
struct mmsghdr;
struct iovec;

struct tq_queue {
  struct mnl_socket *nl;
  int fd;
  uint32_t queue_num;
  uint32_t batch_size;
  // Receive side: batch_size slots of slot_size bytes each, in memory owned by the caller
  // (the JS Buffer), so the kernel writes packets straight where JS reads them.
  uint8_t *rbuf;
  size_t slot_size;
  struct mmsghdr *msgs;
  struct iovec *iovs;
  // Send side: verdict messages appended back to back and sent in one sendto.
  uint8_t *sbuf;
  size_t scap;
  size_t slen;
  uint32_t spending;
  struct tq_stats stats;
};

// Bytes of receive buffer needed per packet for a copy range (payload + netlink headers).
size_t tq_slot_size(uint32_t copy_range);

// Opens, binds and configures the queue. rbuf must hold batch_size * tq_slot_size(copy_range)
// bytes and outlive the queue. Returns 0, or a negative errno with a message in err.
int tq_open(struct tq_queue *q, const struct tq_options *o, uint8_t *rbuf, char *err, size_t errlen);

// Non-blocking: receives what is waiting (at most batch_size packets), writes
// TQ_META_FIELDS words per packet into meta and returns the packet count (>= 0).
uint32_t tq_recv_batch(struct tq_queue *q, uint32_t *meta);

// Appends one verdict to the send buffer (flushing first when it is full).
// mark < 0 leaves the mark unchanged; payload may be NULL. Returns 0 or a negative errno.
int tq_verdict(struct tq_queue *q, uint32_t id, uint32_t verdict, int64_t mark, const uint8_t *payload,
               uint32_t payload_len);

// Sends every appended verdict in one sendto. Returns 0 or a negative errno.
int tq_flush(struct tq_queue *q);

// Flushes, unbinds and closes the socket, frees everything tq_open allocated. Idempotent.
void tq_close(struct tq_queue *q);

#endif
