/* The shuffled allocation order the heap-layout targets share (cscatter.c, crelocate_bench.c,
 * cgraph_bench.c): a fixed-seed xorshift64 and a Fisher–Yates shuffle, so every run scatters
 * the same way. */
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;

static inline uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static inline void shuffle(void **a, long len) {
    for (long i = len - 1; i > 0; i--) {
        long j = (long)(next_rand() % (uint64_t)(i + 1));
        void *t = a[i]; a[i] = a[j]; a[j] = t;
    }
}
