// Benchmark server: one epoll thread, non-blocking sockets.
//   default: answer "pong" to the first bytes of each connection, then close (short
//            connections: the server does the active close, so TIME_WAIT stays on this side
//            and the client never runs out of ephemeral ports).
//   --sink:  read and discard until EOF (bulk throughput tests).
// Prints "ready" on stdout once listening; exits 0 on SIGTERM/SIGINT.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void usage(void) {
  fprintf(stderr, "usage: server --addr IPv4 --port N [--sink] [--backlog N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *addr = "0.0.0.0";
  int port = 0, sink = 0, backlog = 4096;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--addr") && i + 1 < argc) addr = argv[++i];
    else if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--backlog") && i + 1 < argc) backlog = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sink")) sink = 1;
    else usage();
  }
  if (port <= 0 || port > 65535) usage();

  // No SA_RESTART: epoll_wait must return EINTR so the loop sees the stop flag.
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); return 2; }
  if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0) { perror("bind"); return 1; }
  if (listen(lfd, backlog) < 0) { perror("listen"); return 1; }

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  printf("ready\n");
  fflush(stdout);

  static char buf[256 * 1024];
  struct epoll_event evs[256];
  unsigned long long accepted = 0, bytes = 0;
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or a transient error: the next wakeup retries.
          accepted++;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      if (sink) {
        for (;;) {
          ssize_t r = read(fd, buf, sizeof buf);
          if (r > 0) { bytes += (unsigned long long)r; continue; }
          if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
          close(fd);  // EOF or error; close() also removes it from the epoll set.
          break;
        }
        continue;
      }
      // Pong mode: drain what the client sent (so close() sends FIN, not RST), answer, close.
      ssize_t r = read(fd, buf, sizeof buf);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r > 0) {
        while (read(fd, buf, sizeof buf) > 0) {}
        (void)!write(fd, "pong", 4);
      }
      close(fd);
    }
  }
  fprintf(stderr, "server: accepted %llu connections, sank %llu bytes\n", accepted, bytes);
  return 0;
}
