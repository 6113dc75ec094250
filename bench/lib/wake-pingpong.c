// What one cross-thread wake-up costs on this machine: two threads pass a token back and forth
// over a pair of eventfds, each blocking in epoll_wait as a datapath worker does between
// packets. Prints the median round trip (two wake-ups) and the CPU each round trip used.
// Build and run: cc -O2 -pthread -o /tmp/wake bench/lib/wake-pingpong.c && /tmp/wake 20000
// (docs/performance.md, "Where the time goes on the kernel path").
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int to_b, to_a;
static int rounds;

static void wait_on(int fd) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  uint64_t v;
  struct epoll_event out;
  while (epoll_wait(ep, &out, 1, -1) != 1) {}
  if (read(fd, &v, 8) != 8) abort();
  close(ep);
}

static void *b_main(void *arg) {
  (void)arg;
  uint64_t one = 1;
  for (int i = 0; i < rounds; i++) {
    wait_on(to_b);
    if (write(to_a, &one, 8) != 8) abort();
  }
  return NULL;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
  rounds = argc > 1 ? atoi(argv[1]) : 20000;
  to_b = eventfd(0, 0);
  to_a = eventfd(0, 0);
  double *rt = malloc(sizeof(double) * rounds);
  pthread_t b;
  pthread_create(&b, NULL, b_main, NULL);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  uint64_t one = 1;
  for (int i = 0; i < rounds; i++) {
    double t0 = now_us();
    if (write(to_b, &one, 8) != 8) abort();
    wait_on(to_a);
    rt[i] = now_us() - t0;
    usleep(200); // both threads asleep between round trips, as between connections one at a time
  }
  getrusage(RUSAGE_SELF, &r1);
  pthread_join(b, NULL);
  double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 +
               (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
  qsort(rt, rounds, sizeof(double), cmp);
  printf("round trip (2 wake-ups): p50 %.1f us, p90 %.1f us; process CPU per round trip %.1f us (incl. the usleep's own wake-up)\n",
         rt[rounds / 2], rt[rounds * 9 / 10], cpu / rounds);
  return 0;
}
