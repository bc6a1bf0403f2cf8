/* An ordinary C program (not written for memzinc) whose linked structures are scattered over the
 * heap: a list and a binary search tree allocated in shuffled order among other allocations.
 * It hides one list node's address in an integer (as hash tables and tagged pointers do), so a
 * tool that moves objects must leave that node where it is.
 *
 *   cscatter [N]   prints "address <name> 0x..." lines, then "ready"
 *   stdin: status | order | quit
 *     status   the program's own check: the list holds 0..N-1 in order, the tree's in-order
 *              walk is 0..N-1, the hidden node still holds its value: OK or CORRUPT
 *     order    "descents L T": steps along the list / the tree's preorder to a lower address */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    long value;
    struct node *next;
};

struct tree {
    long key;
    struct tree *left, *right;
};

struct node *g_list;
struct tree *g_tree;
uintptr_t g_hidden; /* a node's address, as an integer */
static long hidden_value;
static long n = 64;

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

static long inorder(const struct tree *t, long expect) {
    if (!t || expect < 0) return expect;
    expect = inorder(t->left, expect);
    if (expect < 0 || t->key != expect) return -1;
    return inorder(t->right, expect + 1);
}

static long descents_tree(const struct tree *t, uintptr_t *last) {
    if (!t) return 0;
    long d = (uintptr_t)t < *last;
    *last = (uintptr_t)t;
    d += descents_tree(t->left, last);
    return d + descents_tree(t->right, last);
}

int main(int argc, char **argv) {
    if (argc > 1) n = atol(argv[1]);
    void **nodes = malloc(sizeof *nodes * n), **trees = malloc(sizeof *trees * n);
    for (long i = 0; i < n; i++) {
        nodes[i] = malloc(sizeof(struct node));
        trees[i] = malloc(sizeof(struct tree));
    }
    shuffle(nodes, n);
    shuffle(trees, n);
    for (long i = 0; i < n; i++) {
        struct node *x = nodes[i];
        x->value = i;
        x->next = i + 1 < n ? nodes[i + 1] : NULL;
    }
    g_list = nodes[0];
    g_tree = build((struct tree **)trees, 0, n);
    g_hidden = (uintptr_t)nodes[n / 2];
    hidden_value = n / 2;
    printf("address hidden 0x%lx\n", (unsigned long)g_hidden);
    free(nodes);
    free(trees);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "status", 6) == 0) {
            long i = 0;
            const struct node *x = g_list;
            for (; x && x->value == i; x = x->next) i++;
            int ok = x == NULL && i == n && inorder(g_tree, 0) == n
                && ((const struct node *)g_hidden)->value == hidden_value;
            printf("%s\n", ok ? "OK" : "CORRUPT");
        } else if (strncmp(line, "order", 5) == 0) {
            long dl = 0;
            for (const struct node *x = g_list; x && x->next; x = x->next) dl += (uintptr_t)x->next < (uintptr_t)x;
            uintptr_t last = 0;
            printf("descents %ld %ld\n", dl, descents_tree(g_tree, &last));
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
