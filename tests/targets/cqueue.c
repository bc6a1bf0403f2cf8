/* cqueue: a C target for user invariants (models/targets/cqueue.mzn) on real snapshots.
 *
 * A global queue with a count and capacity, a linked list of heap nodes (malloc) and a heap
 * buffer with a length and capacity. Invariants the model file states: count <= capacity,
 * len <= capacity, the list from head is acyclic; memzinc adds that every non-null pointer
 * is valid. The first argument plants corruption:
 *
 *   ok        nothing broken
 *   corrupt   QUEUE.count = 9 > capacity 8, buffer len = 1000 > capacity 16, and the last
 *             node's next points back at the second node (a cycle)
 *   dangling  the second node's next points into an unmapped page
 *
 * Built by the tests: gcc -g -O0 -o cqueue tests/targets/cqueue.c. Prints `address NAME 0x...`
 * facts and `ready`; then, for every line on stdin, a `status ...` line (its own view of its
 * health); exits when stdin closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct node {
    struct node *next;
    int value;
};

struct buffer {
    unsigned int len;
    unsigned int capacity;
    int data[16];
};

struct queue {
    unsigned int count;
    unsigned int capacity;
    struct node *head;
    struct buffer *buf;
};

struct queue QUEUE;

/* Nodes from head until NULL, or -1 when the walk does not end within 1000 steps. */
static int list_length(void) {
    int n = 0;
    for (struct node *p = QUEUE.head; p; p = p->next)
        if (++n > 1000)
            return -1;
    return n;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    long page = sysconf(_SC_PAGESIZE);
    char *pages = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED)
        return 2;
    munmap(pages + page, page);

    struct node *nodes[4];
    for (int i = 0; i < 4; i++) {
        nodes[i] = malloc(sizeof(struct node));
        if (!nodes[i])
            return 3;
        nodes[i]->value = 10 * (i + 1);
        nodes[i]->next = NULL;
    }
    for (int i = 0; i < 3; i++)
        nodes[i]->next = nodes[i + 1];
    QUEUE.head = nodes[0];
    QUEUE.count = 4;
    QUEUE.capacity = 8;
    QUEUE.buf = calloc(1, sizeof(struct buffer));
    if (!QUEUE.buf)
        return 3;
    QUEUE.buf->capacity = 16;
    QUEUE.buf->len = 3;

    if (strcmp(mode, "corrupt") == 0) {
        QUEUE.count = 9;
        QUEUE.buf->len = 1000;
        nodes[3]->next = nodes[1];
    } else if (strcmp(mode, "dangling") == 0) {
        nodes[1]->next = (struct node *)(pages + page + 64);
    } else if (strcmp(mode, "ok") != 0) {
        return 4;
    }

    printf("address QUEUE %p\n", (void *)&QUEUE);
    printf("address buf %p\n", (void *)QUEUE.buf);
    for (int i = 0; i < 4; i++)
        printf("address node%d %p\n", i, (void *)nodes[i]);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        /* Only walk a list whose pointers all stay in our own nodes: a dangling one would fault. */
        int safe = 1, n = 0;
        for (struct node *p = QUEUE.head; p && n < 1000; p = p->next, n++) {
            int known = 0;
            for (int i = 0; i < 4; i++)
                known |= p == nodes[i];
            if (!known) {
                safe = 0;
                break;
            }
        }
        printf("status count=%u capacity=%u len=%u list=%d\n", QUEUE.count, QUEUE.capacity, QUEUE.buf->len,
               safe ? list_length() : -2);
        fflush(stdout);
    }
    return 0;
}
