// Signals that arrive while a tool freezes a process and runs syscalls in it must all reach the
// process, once each. Real-time signals queue (they do not merge), so a count tells.
//
//   sigstorm recv OUT        counts SIGRTMIN in a handler; every 5 ms writes the count to OUT
//   sigstorm send PID N      queues N SIGRTMIN to PID (sigqueue), pausing now and then so the
//                            receiver's queue never reaches the pending-signal limit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long received;

static void on_signal(int sig, siginfo_t *info, void *ctx) {
  (void)sig;
  (void)info;
  (void)ctx;
  received++;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "recv") == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 1;
    for (;;) {
      char line[32];
      int n = snprintf(line, sizeof line, "%20ld\n", received);
      if (pwrite(fd, line, n, 0) != n) return 1;
      sleep_us(5000);
    }
  }
  if (argc == 4 && strcmp(argv[1], "send") == 0) {
    pid_t pid = atoi(argv[2]);
    long n = atol(argv[3]);
    for (long i = 0; i < n; i++) {
      union sigval v = {.sival_int = (int)i};
      while (sigqueue(pid, SIGRTMIN, v) != 0) {
        if (errno != EAGAIN) return 1;
        sleep_us(1000);  // the receiver's queue is full
      }
      if (i % 50 == 49) sleep_us(1000);
    }
    return 0;
  }
  fprintf(stderr, "usage: sigstorm recv OUT | sigstorm send PID N\n");
  return 2;
}
