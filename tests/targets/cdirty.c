/* cdirty: a target for incremental snapshots. It holds MIB MiB of touched memory (argv[1],
 * default 64) and prints "ready ADDRESS PAGES". For each line "dirty K SEED" on stdin it flips
 * byte SEED mod 4096 of each of K distinct pages (page (i * 7919 + SEED) mod PAGES, i < K), prints
 * "dirtied K" and blocks on stdin again: between commands it writes nothing. For "map K" it maps
 * K new pages of anonymous memory, writes them, makes them read-only and prints "mapped K ADDRESS"
 * (a mapping of its own that was not there at the previous snapshot). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    size_t pages = (mib << 20) / 4096;
    unsigned char *mem = malloc(pages * 4096);
    if (!mem)
        return 1;
    memset(mem, 0x5a, pages * 4096);
    printf("ready %p %zu\n", (void *)mem, pages);
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        unsigned k, seed;
        if (sscanf(line, "map %u", &k) == 1) {
            unsigned char *more = mmap(NULL, (size_t)k * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (more == MAP_FAILED)
                return 1;
            memset(more, 0xa5, (size_t)k * 4096);
            /* Read-only from now on, so the kernel does not merge it into a neighbour. */
            if (mprotect(more, (size_t)k * 4096, PROT_READ) != 0)
                return 1;
            printf("mapped %u %p\n", k, (void *)more);
            fflush(stdout);
            continue;
        }
        if (sscanf(line, "dirty %u %u", &k, &seed) != 2)
            continue;
        /* 7919 is odd and PAGES a power of two: the K pages are distinct for K <= PAGES. */
        for (unsigned i = 0; i < k; i++) {
            size_t page = ((size_t)i * 7919 + seed) % pages;
            mem[page * 4096 + seed % 4096] ^= 0xff; /* always a change */
        }
        printf("dirtied %u\n", k);
        fflush(stdout);
    }
    return 0;
}
