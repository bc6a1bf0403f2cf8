/* cdirty: a target for incremental snapshots. It holds MIB MiB of touched memory (argv[1],
 * default 64) and prints "ready ADDRESS PAGES". For each line "dirty K SEED" on stdin it flips
 * byte SEED mod 4096 of each of K distinct pages (page (i * 7919 + SEED) mod PAGES, i < K), prints
 * "dirtied K" and blocks on stdin again: between commands it writes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
