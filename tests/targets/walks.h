/* The relocation benchmark's nodes and the walks it times (crelocate_bench.c), shared with
 * cspacing.c, which times the same walks over nodes laid out in traversal order. */
#ifndef MEMZINC_WALKS_H
#define MEMZINC_WALKS_H

#include <time.h>

struct node { long value; struct node *next; };
struct tree { long key; struct tree *left, *right; };

/* Preorder (node, left, right), the tree's recursive walk. */
static long preorder_sum(const struct tree *t) {
    long s = 0;
    while (t) {
        s += t->key + preorder_sum(t->left);
        t = t->right;
    }
    return s;
}

static long list_sum(const struct node *x) {
    long s = 0;
    for (; x; x = x->next) s += x->value;
    return s;
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#endif
