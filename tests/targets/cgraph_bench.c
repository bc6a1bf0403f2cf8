/* The object-graph benchmark's target (tests/benches/graph.rs): N heap objects in lists and
 * binary trees behind globals, allocated in shuffled order, then it waits to be snapshotted.
 * With K > 0, also K two-node lists in g_heads whose head's next is overwritten with an
 * unmapped address: K broken pointers and K orphans for `plan`; with `flip`, the head's next
 * has bit 44 flipped instead (unmapped, one byte off the orphan it named).
 *   cgraph_bench N [K [flip]]   prints "ready" once built */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct node { long value; struct node *next; };
struct tree { long key; struct tree *left, *right; };

#define LISTS 16
#define MAX_BROKEN 100000
struct node *g_lists[LISTS];
struct node *g_heads[MAX_BROKEN];
struct tree *g_tree;

#include "shuffle.h"

static struct tree *build(struct tree **pool, long lo, long hi) {
    if (lo >= hi) return NULL;
    long mid = (lo + hi) / 2;
    struct tree *t = pool[mid];
    t->key = mid;
    t->left = build(pool, lo, mid);
    t->right = build(pool, mid + 1, hi);
    return t;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long k = argc > 2 ? atol(argv[2]) : 0;
    if (k > MAX_BROKEN) k = MAX_BROKEN;
    for (long i = 0; i < k; i++) {
        g_heads[i] = malloc(sizeof(struct node));
        g_heads[i]->value = i;
        g_heads[i]->next = malloc(sizeof(struct node));
        g_heads[i]->next->value = -i;
        g_heads[i]->next->next = NULL;
        if (argc > 3 && argv[3][0] == 'f')
            g_heads[i]->next = (struct node *)((uintptr_t)g_heads[i]->next ^ (1ull << 44));
        else
            g_heads[i]->next = (struct node *)(uintptr_t)(0xdead0000u + 16 * (uint64_t)i);
    }
    long half = n / 2;
    /* Allocate interleaved, link in shuffled order: nodes scattered over the heap. */
    struct node **nodes = malloc(sizeof *nodes * half);
    struct tree **trees = malloc(sizeof *trees * (n - half));
    for (long i = 0; i < half; i++) {
        nodes[i] = malloc(sizeof **nodes);
        trees[i] = malloc(sizeof **trees);
    }
    for (long i = half; i < n - half; i++) trees[i] = malloc(sizeof **trees);
    for (long i = half - 1; i > 0; i--) {
        long j = (long)(next_rand() % (uint64_t)(i + 1));
        struct node *t = nodes[i]; nodes[i] = nodes[j]; nodes[j] = t;
    }
    for (long i = 0; i < half; i++) {
        nodes[i]->value = i;
        nodes[i]->next = (i + 1) % (half / LISTS + 1) == 0 || i + 1 == half ? NULL : nodes[i + 1];
    }
    long l = 0;
    for (long i = 0; i < half && l < LISTS; i++)
        if (i == 0 || nodes[i - 1]->next == NULL) g_lists[l++] = nodes[i];
    g_tree = build(trees, 0, n - half);
    free(nodes);
    free(trees);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
