/* crefheap: a C target with a reference-counted heap in the layout memzinc::reason::heap repairs, for
 * `memzinc check` and `memzinc plan --heap` on real snapshots.
 *
 * N objects of 16 bytes in one malloc'd arena: u32 type tag (1..TYPES), u32 refcount, pointer
 * to an object of type MEMZINC_HEAP_SUCC[type - 1]. Invariants: every pointer points at the
 * start of an object of the type its own type requires; every refcount equals the pointers to
 * its object. The exported MEMZINC_HEAP_* globals tell memzinc where the arena is. With the
 * argument `corrupt` it plants: a garbage pointer (object 10), a misaligned one (200), one to
 * an object of the wrong type (555) and a refcount two too high (777). A second argument sets
 * the number of objects (default 1000); beyond the first thousand, `corrupt` also misaligns one
 * pointer in twenty (the bench's large heaps).
 *
 * Built by the tests: gcc -g -O0 -o crefheap tests/targets/crefheap.c. Prints `address NAME
 * 0x...` facts and `ready`; then, for every line on stdin, its own count of broken invariants
 * (`status bad_pointers=.. bad_refcounts=..`); exits when stdin closes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPES 4

struct obj {
    uint32_t type;
    uint32_t refcount;
    struct obj *next;
};

struct obj *MEMZINC_HEAP_ARENA;
uint64_t MEMZINC_HEAP_OBJECTS;
uint32_t MEMZINC_HEAP_TYPES = TYPES;
uint32_t MEMZINC_HEAP_SUCC[TYPES] = {2, 3, 4, 1};

/* The object `p` is the start of, or -1. */
static long index_of(const struct obj *p, long N) {
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)MEMZINC_HEAP_ARENA;
    if (a < base || a >= base + N * sizeof(struct obj) || (a - base) % sizeof(struct obj))
        return -1;
    return (long)((a - base) / sizeof(struct obj));
}

int main(int argc, char **argv) {
    long n_arg = argc > 2 ? atol(argv[2]) : 1000;
    if (n_arg < 1000 || n_arg > 10000000)
        return 4;
    const long N = n_arg;
    MEMZINC_HEAP_OBJECTS = (uint64_t)N;
    struct obj *arena = calloc(N, sizeof(struct obj));
    if (!arena)
        return 2;
    MEMZINC_HEAP_ARENA = arena;
    for (int j = 0; j < N; j++)
        arena[j].type = 1 + j % TYPES;
    /* Object j points at j + 1 (wrapping): type j % 4 + 2 is its successor type. */
    for (int j = 0; j < N; j++) {
        arena[j].next = &arena[(j + 1) % N];
        arena[(j + 1) % N].refcount++;
    }
    if (argc > 1 && strcmp(argv[1], "corrupt") == 0) {
        arena[10].next = (struct obj *)(uintptr_t)0xdeadbeef1ULL;
        arena[200].next = (struct obj *)((char *)arena[200].next + 3);
        arena[555].next = &arena[555 + 2]; /* type 2 further on: the wrong one */
        arena[777].refcount += 2;
        /* Larger heaps (the bench): one pointer in twenty beyond the first thousand misaligned. */
        for (long j = 1000; j < N; j += 20)
            arena[j].next = (struct obj *)((char *)arena[j].next + 4);
    }
    printf("address MEMZINC_HEAP_ARENA %p\n", (void *)arena);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long bad_pointers = 0, bad_refcounts = 0;
        uint32_t *incoming = calloc(N, sizeof(uint32_t));
        if (!incoming)
            return 5;
        for (int j = 0; j < N; j++) {
            long k = index_of(arena[j].next, N);
            if (k < 0 || arena[k].type != MEMZINC_HEAP_SUCC[arena[j].type - 1])
                bad_pointers++;
            if (k >= 0)
                incoming[k]++;
        }
        for (int k = 0; k < N; k++)
            bad_refcounts += arena[k].refcount != incoming[k];
        free(incoming);
        printf("status bad_pointers=%ld bad_refcounts=%ld\n", bad_pointers, bad_refcounts);
        fflush(stdout);
    }
    return 0;
}
