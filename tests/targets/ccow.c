/* ccow: a target that keeps writing its memory while it is snapshotted (copy-on-write tests).
 * It holds a region of MIB MiB (argv[1], default 16) and prints "ready REGION PAGES". Then:
 * - WRITERS threads each take a mutex, increment a shared sequence number and store it in the
 *   first word of page 0 (A), then in the first word of the last page (B), and unlock: at any
 *   instant A == B, or A == B + 1 while a writer is between its two stores;
 * - each writer w also counts in its own pair of pages (page 1 + w, then page PAGES - 2 - w),
 *   without the lock: the same relation holds for every pair;
 * - a ticker thread stores CLOCK_MONOTONIC (ns) in the first word of page PAGES / 2 on every
 *   turn, and when more than 1 ms passed between two turns prints "gap LAST NOW" (LAST: the
 *   value it had stored before the gap). A freeze stops it, so the value a snapshot holds is
 *   the LAST of a gap, or the value stored just before it (stopped between reading the clock
 *   and storing it).
 * A copy read page by page while the threads run (not one instant) shows B > A: the pages are
 * read in address order, far apart. Two more mappings of 4 pages are filled with 0xd1 and
 * 0xe2 and marked MADV_DONTFORK and MADV_WIPEONFORK (a fork's child lacks the first and sees
 * zeroes in the second). With argv[2] "churn", a churner thread empties a third mapping of
 * CHURN pages (MADV_DONTNEED), then writes a generation number into the first word of its
 * first page and then of its last page, again and again: at any instant the last page holds 0
 * or the first page's number (a copy that read the first page before an emptying and the last
 * one after shows two generations). It prints "ready REGION PAGES DONTFORK WIPEONFORK CHURN"
 * (CHURN "(nil)" without it). The main thread answers "ping" on stdin with "pong SEQ TICK" and
 * exits at end of input. */
#include <pthread.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WRITERS 2
#define CHURN 8192
#define PAGE 4096

static volatile uint64_t *region;
static size_t pages;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seq;

static volatile uint64_t *word(size_t page) { return region + page * (PAGE / 8); }

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *writer(void *arg) {
    size_t w = (size_t)arg;
    uint64_t own = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        uint64_t n = ++seq;
        *word(0) = n;
        __asm__ volatile("" ::: "memory");
        *word(pages - 1) = n;
        pthread_mutex_unlock(&lock);
        own++;
        *word(1 + w) = own;
        __asm__ volatile("" ::: "memory");
        *word(pages - 2 - w) = own;
    }
    return NULL;
}

static volatile uint64_t *churn;

static void *churner(void *arg) {
    (void)arg;
    for (uint64_t generation = 1;; generation++) {
        madvise((void *)churn, CHURN * PAGE, MADV_DONTNEED);
        churn[0] = generation;
        __asm__ volatile("" ::: "memory");
        churn[(CHURN - 1) * (PAGE / 8)] = generation;
    }
    return NULL;
}

static void *ticker(void *arg) {
    (void)arg;
    uint64_t last = now_ns();
    *word(pages / 2) = last;
    for (;;) {
        uint64_t t = now_ns();
        if (t - last > 1000000) {
            printf("gap %lu %lu\n", (unsigned long)last, (unsigned long)t);
            fflush(stdout);
        }
        *word(pages / 2) = t;
        last = t;
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 16;
    pages = (mib << 20) / PAGE;
    region = calloc(pages, PAGE);
    if (!region || pages < 2 * WRITERS + 4)
        return 1;
    memset((void *)region, 0x5a, pages * PAGE);
    *word(0) = 0;
    *word(pages - 1) = 0;
    for (size_t w = 0; w < WRITERS; w++) {
        *word(1 + w) = 0;
        *word(pages - 2 - w) = 0;
    }
    void *no_fork[2];
    for (int i = 0; i < 2; i++) {
        no_fork[i] = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (no_fork[i] == MAP_FAILED)
            return 1;
        memset(no_fork[i], i ? 0xe2 : 0xd1, 4 * PAGE);
        if (madvise(no_fork[i], 4 * PAGE, i ? MADV_WIPEONFORK : MADV_DONTFORK) != 0)
            return 1;
    }
    pthread_t t;
    if (argc > 2 && strcmp(argv[2], "churn") == 0) {
        churn = mmap(NULL, CHURN * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (churn == MAP_FAILED)
            return 1;
        pthread_create(&t, NULL, churner, NULL);
    }
    for (size_t w = 0; w < WRITERS; w++)
        pthread_create(&t, NULL, writer, (void *)w);
    *word(pages / 2) = 0;
    pthread_create(&t, NULL, ticker, NULL);
    /* Ready once every thread has written: the clock page holds a time. */
    while (*word(pages / 2) == 0 || *word(pages - 1) == 0)
        ;
    printf("ready %p %zu %p %p %p\n", (void *)region, pages, no_fork[0], no_fork[1], (void *)churn);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "ping", 4) == 0) {
            pthread_mutex_lock(&lock);
            uint64_t s = seq;
            pthread_mutex_unlock(&lock);
            printf("pong %lu %lu\n", (unsigned long)s, (unsigned long)*word(pages / 2));
            fflush(stdout);
        }
    }
    return 0;
}
