/* A pre-fork server in the way such servers are written (not for memzinc): the parent maps an
 * anonymous shared page (MAP_SHARED|MAP_ANONYMOUS) holding counters, makes a pipe and forks
 * WORKERS workers, which inherit both. Every 5 ms the parent writes the next job number into
 * the pipe; each worker reads jobs one by one and, for each, adds it to the shared sum and
 * counts it, atomically. Step n of the parent appends to OUT
 *
 *     n sent S done D ok        (or "... bad" when the shared sum is not 1 + 2 + ... of the
 *                                jobs done so far in the order they were sent, as it must be
 *                                when every job is done once: the pipe is FIFO and each job
 *                                is counted as it is taken)
 *
 * A worker that dies, or a parent that sees a worker gone, writes "n worker gone" instead.
 * Each worker does its jobs with the weight of its `CONF` (1); one whose weight is not in
 * 1..max_weight does them wrong, and the line counts it: "n sent S done D wrong W ok".
 * `--break K` makes worker K (1-based) start with weight 0, as a memory corruption would.
 *
 *   zdtm_prefork OUT [WORKERS [--break K]]    (default 3 workers) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct conf {
    int weight;
    int max_weight;
};
struct conf CONF = {1, 4};

struct shared {
    uint64_t sum;   /* of the jobs done */
    uint64_t done;  /* jobs taken */
    uint64_t wrong; /* jobs done with a weight out of range */
    uint64_t lock; /* a job is taken and counted under it, so taken order = counted order */
};

static void take_lock(struct shared *s) {
    while (__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE))
        ;
}

/* Waits for a job without the lock, then takes it (non-blocking: another worker may have
 * been first) and counts it under the lock. */
static void worker(struct shared *s, int jobs) {
    fcntl(jobs, F_SETFL, O_NONBLOCK);
    for (;;) {
        struct pollfd pfd = {jobs, POLLIN, 0};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) _exit(3);
        uint32_t job;
        take_lock(s);
        ssize_t n = read(jobs, &job, sizeof job);
        if (n == sizeof job) {
            s->sum += job;
            s->done += 1;
            if (CONF.weight < 1 || CONF.weight > CONF.max_weight) s->wrong += 1;
        }
        __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) _exit(3);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int workers = argc > 2 ? atoi(argv[2]) : 3;
    int broken = argc > 4 && strcmp(argv[3], "--break") == 0 ? atoi(argv[4]) : 0;
    struct shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) return 2;
    int p[2];
    if (pipe(p)) return 2;
    for (int i = 0; i < workers; i++) {
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            close(p[1]);
            if (i + 1 == broken) CONF.weight = 0;
            worker(s, p[0]);
        }
    }
    close(p[0]);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    uint32_t sent = 0;
    for (long step = 1;; step++) {
        char line[128];
        int len;
        if (waitpid(-1, NULL, WNOHANG) > 0) {
            len = snprintf(line, sizeof line, "%ld worker gone\n", step);
        } else {
            sent += 1;
            if (write(p[1], &sent, sizeof sent) != sizeof sent) return 4;
            take_lock(s);
            uint64_t done = s->done, sum = s->sum, wrong = s->wrong;
            __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
            int ok = done <= sent && sum == done * (done + 1) / 2;
            len = snprintf(line, sizeof line, "%ld sent %u done %llu wrong %llu %s\n", step, sent,
                           (unsigned long long)done, (unsigned long long)wrong, ok ? "ok" : "bad");
        }
        if (write(out, line, len) != len) return 5;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}
