/* An ordinary C program with its state on the malloc heap, written the way programs are, not for
 * memzinc: a singly linked list behind a pointer global, optionally an index array of pointers to
 * its nodes, a tree with parent pointers (cycles), an interior pointer, a circular list, and a
 * list allocated by a second thread (a thread arena). Commands on stdin corrupt it the way real
 * bugs do, and `status` runs the program's own consistency check (OK / CORRUPT), which never
 * dereferences a pointer it did not allocate.
 *
 *   clist [index] [tree] [thread]    prints "address <name> 0x..." lines, then "ready"
 *   stdin: status | break <i> | free <i> | smash <i> | quit
 *     break i   node i's next := an unmapped address (the rest of the list is detached)
 *     free i    node i is freed while node i-1 still links it (use after free)
 *     smash i   node i's malloc chunk header := garbage
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 8

#ifdef OWN_MALLOC
/* Built with -DOWN_MALLOC: an allocator of the program's own interposes glibc's (a bump
 * allocator in .bss, as embedded and game code have), so memzinc must not walk glibc's heap. */
static _Alignas(16) unsigned char own_heap[1 << 20];
static size_t own_used;
void *malloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (own_used + n > sizeof own_heap)
        return NULL;
    void *p = own_heap + own_used;
    own_used += n;
    return p;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) {
    void *p = malloc(a * b);
    if (p)
        memset(p, 0, a * b);
    return p;
}
void *realloc(void *p, size_t n) {
    void *q = malloc(n);
    if (q && p)
        memcpy(q, p, n); /* the bump allocator never shrinks: reading n bytes of p stays inside */
    return q;
}
#endif

enum color { RED, GREEN, BLUE };

struct node {
    int id;
    enum color color;
    struct node *next;
};

struct tnode {
    int key;
    struct tnode *left, *right, *parent;
};

struct node *g_list;
/* The index: typed pointers to every node (only with "index"). */
struct node *g_index[N];
/* The program's own record of its nodes, as integers: not a typed pointer. */
uintptr_t g_shadow[N];
struct tnode *g_tree;
int *g_interior;
struct node *g_ring;
struct node *g_thread_list;

static struct node *new_node(int id) {
    struct node *n = malloc(sizeof *n);
    n->id = id;
    n->color = (enum color)(id % 3);
    n->next = NULL;
    return n;
}

static struct tnode *tree(int depth, int *key, struct tnode *parent) {
    if (depth == 0)
        return NULL;
    struct tnode *t = malloc(sizeof *t);
    t->parent = parent;
    t->left = tree(depth - 1, key, t);
    t->key = (*key)++;
    t->right = tree(depth - 1, key, t);
    return t;
}

static void *thread_main(void *arg) {
    (void)arg;
    struct node **tail = &g_thread_list;
    for (int i = 0; i < N; i++) {
        *tail = new_node(100 + i);
        tail = &(*tail)->next;
    }
    return NULL;
}

/* The program's own check: the list holds its N nodes in order, each where it was allocated. */
static void status(void) {
    struct node *p = g_list;
    for (int i = 0; i < N; i++) {
        if ((uintptr_t)p != g_shadow[i]) {
            printf("CORRUPT at %d\n", i);
            return;
        }
        if (p->id != i) {
            printf("CORRUPT id %d\n", i);
            return;
        }
        p = p->next;
    }
    printf(p == NULL ? "OK\n" : "CORRUPT tail\n");
}

int main(int argc, char **argv) {
    int index = 0, with_tree = 0, thread = 0;
    for (int i = 1; i < argc; i++) {
        index |= strcmp(argv[i], "index") == 0;
        with_tree |= strcmp(argv[i], "tree") == 0;
        thread |= strcmp(argv[i], "thread") == 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct node *nodes[N];
    struct node **tail = &g_list;
    for (int i = 0; i < N; i++) {
        nodes[i] = new_node(i);
        /* Something else allocated in between, as in any program: nodes are not adjacent. */
        free(malloc(24 + 16 * (i % 3)));
        g_shadow[i] = (uintptr_t)nodes[i];
        if (index)
            g_index[i] = nodes[i];
        *tail = nodes[i];
        tail = &nodes[i]->next;
    }
    if (with_tree) {
        int key = 0;
        g_tree = tree(3, &key, NULL);
        g_interior = &g_tree->left->key;
        g_ring = new_node(50);
        g_ring->next = new_node(51);
        g_ring->next->next = g_ring;
    }
    if (thread) {
        pthread_t t;
        pthread_create(&t, NULL, thread_main, NULL);
        pthread_join(t, NULL);
    }
    for (int i = 0; i < N; i++)
        printf("address node%d %p\n", i, (void *)nodes[i]);
    printf("address g_list %p\n", (void *)&g_list);
    printf("ready\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int i = 0;
        if (strncmp(line, "status", 6) == 0) {
            status();
        } else if (sscanf(line, "break %d", &i) == 1 && i >= 0 && i < N) {
            nodes[i]->next = (struct node *)(uintptr_t)0xdead0000;
            printf("done\n");
        } else if (sscanf(line, "free %d", &i) == 1 && i > 0 && i < N) {
            free(nodes[i]);
            if (index)
                g_index[i] = NULL;
            printf("done\n");
        } else if (sscanf(line, "smash %d", &i) == 1 && i >= 0 && i < N) {
            ((uint64_t *)nodes[i])[-1] = 0x4141414141414141ull;
            printf("done\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("unknown command\n");
        }
    }
    return 0;
}
