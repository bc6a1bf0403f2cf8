/* What the relocation benchmark's walks (tests/targets/crelocate_bench.c) cost on this machine
 * when their 1,000,000 nodes already lie in traversal order, SPACING bytes apart: the best any
 * placement at that spacing can do. `plan --relocate` permutes nodes among the chunks of
 * their size they occupy. One structure alone keeps the spacing the program's allocations
 * gave it: 157 bytes in the benchmark, whose list and tree nodes (both 32-byte chunks) are
 * interleaved with each other and with other allocations. The two relocated together share
 * their chunks, each in a run of them: 78 bytes. Closer would need new chunks.
 *
 *   cc -O2 -o cspacing tests/targets/cspacing.c && ./cspacing [SPACING...]   (default 157 78 32)
 *
 * Prints per spacing the median of 7 walks: the list (`x = x->next`, each load waiting for the
 * one before) and the tree (preorder_sum, the benchmark's recursive walk). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "walks.h"

static char *base;
static long spacing, placed;

static void *place(void) { return base + ((placed++ * spacing) & ~7L); }

static struct tree *build(long lo, long hi) {
    if (lo >= hi) return NULL;
    long mid = lo + (hi - lo) / 2;
    struct tree *t = place();
    t->key = mid;
    t->left = build(lo, mid);
    t->right = build(mid + 1, hi);
    return t;
}

static int by_value(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The median of 7 walks, in ms. */
static double median_ms(int tree, const void *root) {
    long t[7];
    volatile long sink;
    for (int r = 0; r < 7; r++) {
        long t0 = now_ns();
        sink = tree ? preorder_sum(root) : list_sum(root);
        t[r] = now_ns() - t0;
    }
    (void)sink;
    qsort(t, 7, sizeof t[0], by_value);
    return t[3] / 1e6;
}

int main(int argc, char **argv) {
    const long n = 1000000;
    long defaults[] = {157, 78, 32};
    int count = argc > 1 ? argc - 1 : 3;
    for (int a = 0; a < count; a++) {
        spacing = argc > 1 ? atol(argv[a + 1]) : defaults[a];
        if (spacing < (long)sizeof(struct tree)) {
            fprintf(stderr, "spacing %ld is less than a node (%zu bytes)\n", spacing, sizeof(struct tree));
            return 1;
        }
        base = calloc(1, n * spacing + 64);
        if (!base) return 1;
        placed = 0;
        struct node *head = NULL, **link = &head;
        for (long i = 0; i < n; i++) {
            struct node *x = place();
            x->value = i;
            *link = x;
            link = &x->next;
        }
        *link = NULL;
        double list = median_ms(0, head);
        free(base);
        base = calloc(1, n * spacing + 64);
        if (!base) return 1;
        placed = 0;
        struct tree *root = build(0, n);
        printf("spacing %ld bytes: list %.1f ms, tree %.1f ms\n", spacing, list, median_ms(1, root));
        free(base);
    }
    return 0;
}
