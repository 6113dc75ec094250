// Benchmark load generator: one epoll thread, short TCP connections.
//   closed loop: --concurrency N connections in flight (1 = latency, 32 = rate)
//   open loop:   --rate R new connections per second whatever the completions
//   bulk:        --bulk BYTES on one connection, as fast as possible
// A short connection is: connect, write "ping", read to EOF, close. Connect latency is the
// time from connect() to the socket becoming writable (the SYN / SYN-ACK round trip, which
// is exactly what NFQUEUE handlers sit on). Bounded by --count and --seconds, whichever
// comes first; connections still in flight at the deadline are abandoned (not counted).
// Prints one JSON object on stdout.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536
enum { FREE = 0, CONNECTING, READING };

struct conn {
  uint64_t t0;      // connect() issued, ns
  uint64_t tconn;   // became writable, ns
  int state;
  int slot;         // index into active[]
};

static struct conn conns[MAX_FD];
static int active[MAX_FD];
static int nactive;

static struct sockaddr_in dst;
static int ep;
static uint64_t *lat_connect, *lat_total;
static size_t nlat, caplat;
static unsigned long long ok, errors, timeouts, abandoned, started, overrun;
// After the deadline, connections still in flight are finished but not counted: closing them
// half-open would leave their SYN / SYN-ACK queued or in flight, and the next run (new
// process, same ports) would meet those stale segments as resets.
static int draining;
static unsigned long long drained;
// Failed connections by errno (ETIMEDOUT for our own --timeout-ms), to tell resets from refusals.
static unsigned long long errno_count[256];

static void count_errno(int e) { errno_count[e > 0 && e < 256 ? e : 0]++; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: client --addr IPv4 --port N [--concurrency N | --rate CONN_PER_S] [--count N]\n"
          "              [--seconds S] [--timeout-ms MS] [--max-inflight N] [--drain-ms MS]\n"
          "       client --addr IPv4 --port N --bulk BYTES [--seconds S]\n");
  exit(2);
}

static void track(int fd, uint64_t t0) {
  conns[fd].t0 = t0;
  conns[fd].state = CONNECTING;
  conns[fd].slot = nactive;
  active[nactive++] = fd;
}

static void finish(int fd, int success, int err) {
  struct conn *c = &conns[fd];
  int last = active[--nactive];
  active[c->slot] = last;
  conns[last].slot = c->slot;
  c->state = FREE;
  close(fd);
  if (draining) { drained++; return; }
  if (!success) { errors++; count_errno(err); return; }
  ok++;
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : 65536;
    lat_connect = realloc(lat_connect, caplat * sizeof *lat_connect);
    lat_total = realloc(lat_total, caplat * sizeof *lat_total);
    if (!lat_connect || !lat_total) { perror("realloc"); exit(1); }
  }
  lat_connect[nlat] = c->tconn - c->t0;
  lat_total[nlat] = now_ns() - c->t0;
  nlat++;
}

// Returns 0 when a connection is in flight, -1 when it failed at once (counted as error).
static int start_one(void) {
  started++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { errors++; count_errno(errno); return -1; }
  if (fd >= MAX_FD) { close(fd); errors++; count_errno(EMFILE); return -1; }
  uint64_t t0 = now_ns();
  int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
  if (r < 0 && errno != EINPROGRESS) { int e = errno; close(fd); errors++; count_errno(e); return -1; }
  track(fd, t0);
  struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

static void on_event(int fd, uint32_t events) {
  struct conn *c = &conns[fd];
  static char buf[4096];
  if (c->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err || (events & (EPOLLERR | EPOLLHUP))) { finish(fd, 0, err ? err : ECONNABORTED); return; }
    c->tconn = now_ns();
    if (write(fd, "ping", 4) != 4) { finish(fd, 0, errno); return; }
    c->state = READING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return;
  }
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) continue;
    if (r == 0) { finish(fd, 1, 0); return; }
    if (errno == EAGAIN || errno == EINTR) return;
    finish(fd, 0, errno);
    return;
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

// Nearest-rank percentile in microseconds; 0 when there are no samples.
static double pct_us(uint64_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return (double)v[rank - 1] / 1000.0;
}

static int run_bulk(unsigned long long bytes, double seconds) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { perror("socket"); return 1; }
  // Bound every blocking call so a stuck transfer cannot outlive --seconds by much.
  struct timeval tv = {.tv_sec = (time_t)seconds + 1, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    printf("{\"bulk\":true,\"bytes\":0,\"seconds\":0,\"mbPerSec\":0,\"complete\":false,\"errors\":1}\n");
    return 0;
  }
  static char buf[256 * 1024];
  memset(buf, 'x', sizeof buf);
  uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(seconds * 1e9);
  unsigned long long sent = 0;
  int err = 0;
  while (sent < bytes) {
    size_t chunk = bytes - sent < sizeof buf ? (size_t)(bytes - sent) : sizeof buf;
    ssize_t w = write(fd, buf, chunk);
    if (w < 0) { if (errno == EINTR) continue; err = 1; break; }
    sent += (unsigned long long)w;
    if (now_ns() > deadline) break;
  }
  // Wait for the server's close after our FIN: the time then covers delivery, not just
  // filling the local send buffer.
  shutdown(fd, SHUT_WR);
  while (!err) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r == 0) break;
    if (r < 0) { if (errno == EINTR) continue; err = 1; }
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  close(fd);
  printf("{\"bulk\":true,\"bytes\":%llu,\"seconds\":%.6f,\"mbPerSec\":%.2f,\"complete\":%s,\"errors\":%d}\n",
         sent, secs, secs > 0 ? (double)sent / 1e6 / secs : 0.0, sent == bytes && !err ? "true" : "false", err);
  return 0;
}

int main(int argc, char **argv) {
  const char *addr = NULL;
  int port = 0, concurrency = 1, timeout_ms = 2000, max_inflight = 4096, drain_ms = 1500;
  unsigned long long count = 1000000, bulk = 0;
  double seconds = 3, rate = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--addr")) addr = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--concurrency")) concurrency = atoi(v);
    else if (!strcmp(a, "--count")) count = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--seconds")) seconds = atof(v);
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--timeout-ms")) timeout_ms = atoi(v);
    else if (!strcmp(a, "--max-inflight")) max_inflight = atoi(v);
    else if (!strcmp(a, "--drain-ms")) drain_ms = atoi(v);
    else if (!strcmp(a, "--bulk")) bulk = strtoull(v, NULL, 10);
    else usage();
    i++;
  }
  if (!addr || port <= 0 || port > 65535 || concurrency < 1 || seconds <= 0 || count < 1 || rate < 0 ||
      max_inflight < 1 || max_inflight > MAX_FD / 2 || concurrency > MAX_FD / 2)
    usage();
  signal(SIGPIPE, SIG_IGN);
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); return 2; }
  if (bulk) return run_bulk(bulk, seconds);

  ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = -1;
  uint64_t t_start = now_ns();
  uint64_t deadline = t_start + (uint64_t)(seconds * 1e9);
  uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000ull;
  if (rate > 0) {
    // Open loop: a periodic timer paces new connections; missed ticks are caught up.
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    uint64_t period = (uint64_t)(1e9 / rate);
    if (period == 0) period = 1;
    struct itimerspec its = {.it_interval = {(time_t)(period / 1000000000ull), (long)(period % 1000000000ull)},
                             .it_value = {0, 1}};
    timerfd_settime(tfd, 0, &its, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = tfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  } else {
    for (int i = 0; i < concurrency && started < count; i++) start_one();
  }

  struct epoll_event evs[512];
  uint64_t last_scan = t_start;
  for (;;) {
    uint64_t now = now_ns();
    if (now >= deadline) break;
    if (started >= count && nactive == 0) break;
    int wait_ms = (int)((deadline - now) / 1000000ull) + 1;
    if (wait_ms > 100) wait_ms = 100;
    int n = epoll_wait(ep, evs, 512, wait_ms);
    if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == tfd) {
        uint64_t ticks = 0;
        if (read(tfd, &ticks, sizeof ticks) != sizeof ticks) continue;
        for (uint64_t k = 0; k < ticks && started < count; k++) {
          if (nactive >= max_inflight) { overrun++; started++; continue; }
          start_one();
        }
        continue;
      }
      on_event(fd, evs[i].events);
    }
    if (rate == 0) {
      // Closed loop: keep exactly `concurrency` in flight (bounded retries per wakeup so a
      // burst of immediate connect failures cannot spin here forever).
      int tries = 0;
      while (nactive < concurrency && started < count && tries++ < 4 * concurrency) start_one();
    }
    now = now_ns();
    if (now - last_scan > 50000000ull) {
      last_scan = now;
      for (int i = 0; i < nactive;) {
        int fd = active[i];
        if (now - conns[fd].t0 > timeout_ns) { timeouts++; finish(fd, 0, ETIMEDOUT); } else i++;
      }
    }
  }
  uint64_t t_end = now_ns();
  // Drain (uncounted): wait for in-flight connections to finish, bounded by --drain-ms.
  draining = 1;
  uint64_t drain_end = t_end + (uint64_t)drain_ms * 1000000ull;
  if (tfd >= 0) close(tfd);
  while (nactive > 0) {
    uint64_t now = now_ns();
    if (now >= drain_end) break;
    int wait_ms = (int)((drain_end - now) / 1000000ull) + 1;
    int n = epoll_wait(ep, evs, 512, wait_ms > 100 ? 100 : wait_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++)
      if (evs[i].data.fd != tfd) on_event(evs[i].data.fd, evs[i].events);
  }
  abandoned = (unsigned long long)nactive;
  while (nactive > 0) {
    int fd = active[nactive - 1];
    nactive--;
    conns[fd].state = FREE;
    close(fd);
  }
  double secs = (double)(t_end - t_start) / 1e9;
  qsort(lat_connect, nlat, sizeof *lat_connect, cmp_u64);
  qsort(lat_total, nlat, sizeof *lat_total, cmp_u64);
  double mean = 0;
  for (size_t i = 0; i < nlat; i++) mean += (double)lat_connect[i];
  mean = nlat ? mean / (double)nlat / 1000.0 : 0;
  printf("{\"connections\":%llu,\"errors\":%llu,\"timeouts\":%llu,\"drained\":%llu,\"abandoned\":%llu,\"overrun\":%llu,"
         "\"seconds\":%.6f,\"connPerSec\":%.1f,\"connectP50Us\":%.1f,\"connectP99Us\":%.1f,"
         "\"connectMeanUs\":%.1f,\"totalP50Us\":%.1f,\"totalP99Us\":%.1f,\"concurrency\":%d,\"rate\":%.1f,\"errnos\":{",
         ok, errors, timeouts, drained, abandoned, overrun, secs, secs > 0 ? (double)ok / secs : 0.0,
         pct_us(lat_connect, nlat, 50), pct_us(lat_connect, nlat, 99), mean, pct_us(lat_total, nlat, 50),
         pct_us(lat_total, nlat, 99), rate > 0 ? 0 : concurrency, rate);
  for (int e = 0, first = 1; e < 256; e++) {
    if (!errno_count[e]) continue;
    const char *name = e ? strerrorname_np(e) : NULL;
    printf("%s\"%s\":%llu", first ? "" : ",", name ? name : "other", errno_count[e]);
    first = 0;
  }
  printf("}}\n");
  return 0;
}
