/* The relocation benchmark's target (tests/benches/relocate.rs), an ordinary C program: a list
 * and a binary search tree of N nodes each, allocated in shuffled order interleaved with each
 * other and with blobs of other sizes, behind globals. It times its own traversals.
 *
 *   crelocate_bench [N]   prints "ready" once built
 *   stdin: list K | tree K | check | quit
 *     list K   walks the list K times: "list NS NS ..." (nanoseconds per walk, CLOCK_MONOTONIC)
 *     tree K   walks the tree K times in preorder (node, left, right), likewise "tree NS ..."
 *     check    the program's own check: the list holds 0..N-1 in order, the tree's in-order
 *              walk is 0..N-1, every blob holds its stamp: OK or CORRUPT
 *
 * Between commands it waits in read(), holding no pointer to a node in a register. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "walks.h"

struct node *g_list;
struct tree *g_tree;
void **g_blobs; /* the other allocations, kept live */
long g_n = 1000000;
volatile long g_sink;

#include "shuffle.h"

static struct tree *build(struct tree **pool, long lo, long hi) {
    if (lo >= hi) return NULL;
    long mid = lo + (hi - lo) / 2;
    struct tree *t = pool[mid];
    t->key = mid;
    t->left = build(pool, lo, mid);
    t->right = build(pool, mid + 1, hi);
    return t;
}

static long inorder(const struct tree *t, long expect) {
    if (!t || expect < 0) return expect;
    expect = inorder(t->left, expect);
    if (expect < 0 || t->key != expect) return -1;
    return inorder(t->right, expect + 1);
}

static size_t blob_size(long i) { return 8 + (size_t)(i * 7919 % 7) * 8; } /* 8..56 bytes */

int main(int argc, char **argv) {
    if (argc > 1) g_n = atol(argv[1]);
    long n = g_n;
    void **nodes = malloc(sizeof *nodes * n), **trees = malloc(sizeof *trees * n);
    g_blobs = malloc(sizeof *g_blobs * 2 * n);
    if (!nodes || !trees || !g_blobs) return 1;
    for (long i = 0; i < n; i++) {
        nodes[i] = malloc(sizeof(struct node));
        g_blobs[2 * i] = malloc(blob_size(2 * i));
        trees[i] = malloc(sizeof(struct tree));
        g_blobs[2 * i + 1] = malloc(blob_size(2 * i + 1));
        if (!nodes[i] || !trees[i] || !g_blobs[2 * i] || !g_blobs[2 * i + 1]) return 1;
        memset(g_blobs[2 * i], 0x5a, blob_size(2 * i));
        memset(g_blobs[2 * i + 1], 0x5a, blob_size(2 * i + 1));
    }
    shuffle(nodes, n);
    shuffle(trees, n);
    for (long i = 0; i < n; i++) {
        struct node *x = nodes[i];
        x->value = i;
        x->next = i + 1 < n ? nodes[i + 1] : NULL;
    }
    g_list = n ? nodes[0] : NULL;
    g_tree = build((struct tree **)trees, 0, n);
    free(nodes);
    free(trees);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");

    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long k = 0;
        if (sscanf(line, "list %ld", &k) == 1 || sscanf(line, "tree %ld", &k) == 1) {
            int is_list = line[0] == 'l';
            printf("%s", is_list ? "list" : "tree");
            for (long r = 0; r < k; r++) {
                long t0 = now_ns();
                g_sink = is_list ? list_sum(g_list) : preorder_sum(g_tree);
                printf(" %ld", now_ns() - t0);
            }
            printf("\n");
        } else if (strncmp(line, "check", 5) == 0) {
            long i = 0;
            const struct node *x = g_list;
            for (; x && x->value == i; x = x->next) i++;
            int ok = !x && i == n && inorder(g_tree, 0) == n;
            for (long b = 0; ok && b < 2 * n; b++) {
                const unsigned char *p = g_blobs[b];
                for (size_t j = 0; j < blob_size(b); j++) ok &= p[j] == 0x5a;
            }
            printf("%s\n", ok ? "OK" : "CORRUPT");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("unknown command\n");
        }
    }
    return 0;
}
