/* cpause: the target of scripts/bench-pause.sh. It holds MIB MiB of written heap (argv[1]) and
 * a watcher thread that spins reading CLOCK_MONOTONIC and keeps the largest gap it saw between
 * two readings: how long the process was stopped, seen from inside it. On SIGUSR1 the main
 * thread prints "maxgap_us N" (the largest gap since the previous SIGUSR1) and starts over.
 * It prints "ready PID" once its memory is written. On SIGUSR2 it writes one byte in each of K
 * distinct pages (argv[2], default 0), others each time (scripts/bench-incremental.sh), and
 * prints "dirtied K". */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

static _Atomic uint64_t max_gap;
static _Atomic int reset;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *watcher(void *arg) {
    (void)arg;
    uint64_t last = now_ns();
    for (;;) {
        uint64_t t = now_ns();
        if (atomic_exchange(&reset, 0))
            atomic_store(&max_gap, 0);
        else if (t - last > atomic_load(&max_gap))
            atomic_store(&max_gap, t - last);
        last = t;
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 100;
    size_t dirty = argc > 2 ? (size_t)atol(argv[2]) : 0;
    size_t pages = (mib << 20) / 4096, round = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    char *heap = malloc(mib << 20);
    if (!heap)
        return 1;
    memset(heap, 0x5a, mib << 20);
    for (size_t i = 0; i < mib << 20; i += 4096)
        heap[i] = (char)(i >> 12) | 1;
    pthread_t t;
    pthread_create(&t, NULL, watcher, NULL);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR2) {
            /* 7919 is prime: the K pages are distinct while K <= PAGES, and differ per round. */
            for (size_t i = 0; i < dirty && pages > 0; i++)
                heap[((i * 7919 + round * 104729) % pages) * 4096 + 8] ^= 0x3c;
            round++;
            printf("dirtied %zu\n", dirty);
            fflush(stdout);
            continue;
        }
        printf("maxgap_us %lu\n", (unsigned long)(atomic_load(&max_gap) / 1000));
        fflush(stdout);
        atomic_store(&reset, 1);
    }
}
