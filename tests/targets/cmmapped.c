/* An ordinary C program that tunes malloc, as databases do (mallopt M_MMAP_THRESHOLD): two
 * linked lists whose nodes all sit in 4096-byte chunks. The buffers (4088 bytes each) are heap
 * chunks; the index entries (24 bytes, allocated 4072 bytes apart as slab-like records) come
 * after the threshold is lowered, each in a chunk mapped on its own, with 8 fewer usable bytes
 * (4080). Both lists are linked out of address order.
 *
 *   cmmapped       prints "ready" once the chunks are laid out as said (else "layout MISMATCH",
 *                  and exits 1)
 *   stdin: status | order | free | quit
 *     status   the program's own check: both lists hold 0..N-1 in order and every buffer's
 *              bytes are intact: OK or CORRUPT
 *     order    "descents B E": steps along the buffers / the entries to a lower address
 *     free     frees every node (free() aborts on a damaged chunk header): "freed" */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 6
#define ENTRY_BYTES 4072

struct buffer {
    long seq;
    struct buffer *next;
    unsigned char bytes[4072];
};

struct entry {
    long key;
    struct entry *next;
    long spare;
};

struct buffer *g_buffers;
struct entry *g_entries;

/* The order both lists are linked in: not the allocation (address) order. */
static const int link_order[N] = {3, 0, 5, 1, 4, 2};

/* glibc's chunk header: the size word before the user pointer, flags in its low bits. */
static size_t chunk_word(const void *p) { return ((const size_t *)p)[-1]; }
#define IS_MMAPPED 2

static unsigned char pattern(long seq, size_t i) { return (unsigned char)(seq * 31 + i); }

int main(void) {
    /* The arrays on the heap and freed once the lists are linked: a pointer left in a stack
     * slot would pin its node. */
    struct buffer **buffers = malloc(N * sizeof *buffers);
    struct entry **entries = malloc(N * sizeof *entries);
    for (int i = 0; i < N; i++) buffers[i] = malloc(sizeof(struct buffer));
    /* From now on requests of a page are mapped on their own once the heap's top cannot serve
     * them: give the top back first, and allocate the entries before anything else. */
    mallopt(M_MMAP_THRESHOLD, 4000);
    mallopt(M_TOP_PAD, 0);
    malloc_trim(0);
    for (int i = 0; i < N; i++) entries[i] = malloc(ENTRY_BYTES);

    int laid_out = 1;
    for (int i = 0; i < N; i++) {
        laid_out &= (chunk_word(buffers[i]) & ~(size_t)7) == 4096 && !(chunk_word(buffers[i]) & IS_MMAPPED);
        laid_out &= (chunk_word(entries[i]) & ~(size_t)7) == 4096 && (chunk_word(entries[i]) & IS_MMAPPED);
    }
    for (int i = 0; i < N; i++) {
        struct buffer *b = buffers[link_order[i]];
        b->seq = i;
        b->next = i + 1 < N ? buffers[link_order[i + 1]] : NULL;
        for (size_t j = 0; j < sizeof b->bytes; j++) b->bytes[j] = pattern(i, j);
        struct entry *e = entries[link_order[i]];
        e->key = i;
        e->next = i + 1 < N ? entries[link_order[i + 1]] : NULL;
        e->spare = -i;
    }
    g_buffers = buffers[link_order[0]];
    g_entries = entries[link_order[0]];
    free(buffers);
    free(entries);
    printf("%s\n", laid_out ? "ready" : "layout MISMATCH");
    fflush(stdout);
    if (!laid_out)
        return 1;
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "status", 6) == 0) {
            long i = 0;
            const struct buffer *b = g_buffers;
            for (; b && b->seq == i; b = b->next, i++)
                for (size_t j = 0; j < sizeof b->bytes; j++)
                    if (b->bytes[j] != pattern(i, j)) goto corrupt;
            int ok = b == NULL && i == N;
            i = 0;
            const struct entry *e = g_entries;
            for (; e && e->key == i && e->spare == -i; e = e->next) i++;
            ok &= e == NULL && i == N;
            printf("%s\n", ok ? "OK" : "CORRUPT");
            fflush(stdout);
            continue;
        corrupt:
            printf("CORRUPT\n");
        } else if (strncmp(line, "order", 5) == 0) {
            long db = 0, de = 0;
            for (const struct buffer *b = g_buffers; b && b->next; b = b->next) db += (uintptr_t)b->next < (uintptr_t)b;
            for (const struct entry *e = g_entries; e && e->next; e = e->next) de += (uintptr_t)e->next < (uintptr_t)e;
            printf("descents %ld %ld\n", db, de);
        } else if (strncmp(line, "free", 4) == 0) {
            while (g_buffers) {
                struct buffer *next = g_buffers->next;
                free(g_buffers);
                g_buffers = next;
            }
            while (g_entries) {
                struct entry *next = g_entries->next;
                free(g_entries);
                g_entries = next;
            }
            printf("freed\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
