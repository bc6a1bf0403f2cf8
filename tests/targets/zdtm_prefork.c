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
 * For benchmarks (scripts/bench-tree.sh), neither changing OUT: `--heap-mib N` makes the parent
 * and every worker, after the fork, allocate N MiB of private heap and write every byte of it
 * (the parent starts its steps once all of them have); `--gaps FILE` makes the parent append to
 * FILE a line "ready" once that is done and then, at each step, "n T G": the step, its
 * CLOCK_MONOTONIC time in ns and the gap since the previous step in µs (about 5000; a pause
 * from outside — the process stopped, checkpointed, restored — shows as a larger one).
 *
 *   zdtm_prefork OUT [WORKERS] [--break K] [--heap-mib N] [--gaps FILE]    (default 3 workers) */
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
    uint64_t heaps; /* processes whose --heap-mib heap is written */
};

/* N MiB of private heap, every page written with bytes that differ from page to page and from
 * process to process (nothing a dump could skip or share). */
static unsigned char *volatile HEAP; /* kept, so the writes are not dead stores */

static void write_heap(long mib) {
    if (mib <= 0) return;
    size_t size = (size_t)mib << 20;
    unsigned char *heap = malloc(size);
    HEAP = heap;
    if (heap == NULL) _exit(6);
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t v = seed ^ i;
        memcpy(heap + i, &v, 8);
    }
}

static void take_lock(struct shared *s) {
    while (__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE))
        ;
}

/* Waits for a job without the lock, then takes it (non-blocking: another worker may have
 * been first) and counts it under the lock. */
static void worker(struct shared *s, int jobs, long heap_mib) {
    write_heap(heap_mib);
    __atomic_add_fetch(&s->heaps, 1, __ATOMIC_RELEASE);
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
    int workers = 3, broken = 0, arg = 2;
    long heap_mib = 0;
    const char *gaps_path = NULL;
    if (argc > 2 && strncmp(argv[2], "--", 2) != 0) workers = atoi(argv[arg++]);
    for (; arg + 1 < argc; arg += 2) {
        if (strcmp(argv[arg], "--break") == 0) broken = atoi(argv[arg + 1]);
        else if (strcmp(argv[arg], "--heap-mib") == 0) heap_mib = atol(argv[arg + 1]);
        else if (strcmp(argv[arg], "--gaps") == 0) gaps_path = argv[arg + 1];
        else return 2;
    }
    if (arg != argc) return 2;
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
            worker(s, p[0], heap_mib);
        }
    }
    close(p[0]);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    int gaps = -1;
    if (gaps_path != NULL) {
        gaps = open(gaps_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (gaps < 0) return 2;
    }
    write_heap(heap_mib);
    if (heap_mib > 0) {
        while (__atomic_load_n(&s->heaps, __ATOMIC_ACQUIRE) < (uint64_t)workers) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (gaps >= 0 && write(gaps, "ready\n", 6) != 6) return 5;
    uint32_t sent = 0;
    struct timespec prev;
    clock_gettime(CLOCK_MONOTONIC, &prev);
    for (long step = 1;; step++) {
        char line[128];
        int len;
        if (gaps >= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long ns = (long long)now.tv_sec * 1000000000 + now.tv_nsec;
            long long gap = ns - ((long long)prev.tv_sec * 1000000000 + prev.tv_nsec);
            prev = now;
            len = snprintf(line, sizeof line, "%ld %lld %lld\n", step, ns, gap / 1000);
            if (write(gaps, line, len) != len) return 5;
        }
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
