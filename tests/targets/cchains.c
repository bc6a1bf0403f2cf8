/* An ordinary C program (not written for memzinc): a hash table of chains behind a global array
 * of heads, a queue {head, tail}, and a registry of every node it allocated (an index array that
 * its own check uses, so the check never dereferences a pointer it did not allocate). Commands
 * on stdin corrupt it the way real bugs do; `status` prints OK or CORRUPT.
 *
 *   cchains    prints "node <chain> <i> 0x..." per node (chain B is the queue), then "ready"
 *   stdin: status | cut <c> | flip <c> | chop | quit
 *     cut c    chain c's first node's next := an unmapped address
 *     flip c   chain c's first node's next: bit 44 flipped (unmapped, one byte differs)
 *     chop     the queue's head, node 1's next and node 3's next := unmapped addresses
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B 4     /* chains */
#define LEN 3   /* nodes per chain */
#define QLEN 6  /* nodes in the queue */

struct node {
    long key;
    struct node *next;
};

struct queue {
    struct node *head, *tail;
};

struct node *g_table[B];
struct queue g_queue;
struct node *g_all[B * LEN + QLEN];
static int all_count;

static struct node *make(long key) {
    struct node *n = malloc(sizeof *n);
    n->key = key;
    n->next = NULL;
    g_all[all_count++] = n;
    return n;
}

static int known(const struct node *n) {
    for (int i = 0; i < all_count; i++)
        if (g_all[i] == n)
            return 1;
    return 0;
}

/* A chain is whole when it has exactly `len` known nodes with keys first, first+step, ... */
static int whole(const struct node *n, int len, long first, long step) {
    for (int i = 0; i < len; i++, n = n->next)
        if (!known(n) || n->key != first + i * step)
            return 0;
    return n == NULL;
}

static int status(void) {
    for (int c = 0; c < B; c++)
        if (!whole(g_table[c], LEN, c, B))
            return 0;
    if (!whole(g_queue.head, QLEN, 1000, 1) || g_queue.tail->next != NULL)
        return 0;
    return 1;
}

static struct node *unmapped(int i) { return (struct node *)(uintptr_t)(0xdead0000u + 16u * (unsigned)i); }

int main(void) {
    /* Chains are built last to first, so chain 0 sits highest on the heap. */
    for (int c = B - 1; c >= 0; c--) {
        struct node **link = &g_table[c];
        for (int i = 0; i < LEN; i++) {
            *link = make(c + (long)i * B);
            printf("node %d %d %p\n", c, i, (void *)*link);
            link = &(*link)->next;
        }
    }
    struct node **link = &g_queue.head;
    for (int i = 0; i < QLEN; i++) {
        *link = g_queue.tail = make(1000 + i);
        printf("node %d %d %p\n", B, i, (void *)*link);
        link = &(*link)->next;
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int c = 0;
        if (strncmp(line, "status", 6) == 0) {
            printf("%s\n", status() ? "OK" : "CORRUPT");
        } else if (sscanf(line, "cut %d", &c) == 1 && c >= 0 && c < B) {
            g_table[c]->next = unmapped(c);
            printf("done\n");
        } else if (sscanf(line, "flip %d", &c) == 1 && c >= 0 && c < B) {
            g_table[c]->next = (struct node *)((uintptr_t)g_table[c]->next ^ (1ull << 44));
            printf("done\n");
        } else if (strncmp(line, "chop", 4) == 0) {
            struct node *n1 = g_queue.head->next, *n3 = n1->next->next;
            g_queue.head = unmapped(100);
            n1->next = unmapped(101);
            n3->next = unmapped(103);
            printf("done\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
