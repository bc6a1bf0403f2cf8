/* crestore: the target of scripts/bench-restore.sh. It holds MIB MiB of written heap (argv[2])
 * and appends to OUT (argv[1], opened O_APPEND: restored with the process) "ran NS" — the
 * CLOCK_REALTIME nanoseconds of its first step after a stop of more than 50 ms (a checkpoint
 * and restore): when it ran again, seen from inside it. Each step is a 1 ms sleep. With a third
 * argument "touch", after its first stop of more than 400 ms, it changes and checks its memory the ways a lazy restore must follow
 * — drops half of a second 4 MiB mapping (MADV_DONTNEED: zeroes), moves the other half
 * (mremap), forks a child that checks every byte of its heap — checks every byte of its heap
 * itself, and appends "touched NS ok|bad". It prints "ready PID" on stdout once its memory is
 * written. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned char pattern(size_t i) { return (unsigned char)(i * 31 + (i >> 12)); }

static int check(const unsigned char *p, size_t len) {
    int good = 1;
    for (size_t i = 0; i < len; i++)
        good &= p[i] == pattern(i);
    return good;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    size_t len = (size_t)atol(argv[2]) << 20;
    int touch = argc > 3 && !strcmp(argv[3], "touch");
    /* Mapped before the heap: above it, so a background copy in address order reaches it last. */
    size_t blen = 4 << 20, half = blen / 2;
    unsigned char *b = mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *heap = malloc(len);
    if (out < 0 || !heap || b == MAP_FAILED)
        return 1;
    for (size_t i = 0; i < len; i++)
        heap[i] = pattern(i);
    for (size_t i = 0; i < blen; i++)
        b[i] = pattern(i);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    uint64_t last = now_ns();
    for (;;) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        uint64_t t = now_ns();
        if (t - last > 50000000u) {
            dprintf(out, "ran %lu\n", (unsigned long)t);
            if (touch && t - last > 400000000u) {
                int good = 1;
                madvise(b, half, MADV_DONTNEED);
                for (size_t i = 0; i < half; i++)
                    good &= b[i] == 0;
                unsigned char *spot = mmap(NULL, half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                unsigned char *moved = mremap(b + half, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
                good &= moved == spot;
                for (size_t i = 0; good && i < half; i++)
                    good &= moved[i] == pattern(half + i);
                pid_t child = fork();
                if (child == 0)
                    _exit(check(heap, len) ? 0 : 1);
                int status = 1;
                good &= child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
                good &= check(heap, len);
                dprintf(out, "touched %lu %s\n", (unsigned long)now_ns(), good ? "ok" : "bad");
                touch = 0;
            }
        }
        last = now_ns();
    }
}
