/* cbroken: a C target for `memzinc check`, with globals that break the invariants on purpose
 * next to twins that keep them. The tests compile it with `gcc -g`, snapshot it and expect
 * exactly the broken ones to be reported. It prints `address NAME 0x...` facts and `ready`,
 * then waits until stdin closes.
 *
 * Broken: STATE.ready (bool 2), STATE.mode (enum 7), STATE.bad_perms (flag enum 8),
 * STATE.dangling (into an unmapped page), STATE.misaligned (an int * at an odd address),
 * STATE.bad_callback (a function pointer into data), STATE.nodes[1].next (dangling),
 * LONE_BOOL (5), one anonymous read-write-execute mapping (W^X and executable anonymous)
 * and one anonymous read-execute mapping (executable anonymous).
 * Sound: STATE.ok, good_mode, perms (F_READ|F_WRITE), head, label, callback, nodes[0].next,
 * nodes[2].next (NULL), end (one past the end of a mapping).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum mode { MODE_IDLE = 0, MODE_RUN = 1, MODE_STOP = 2 };
enum flags { F_READ = 1, F_WRITE = 2, F_EXEC = 4 };

struct node {
    struct node *next;
    int value;
};

struct state {
    bool ready;
    bool ok;
    enum mode mode;
    enum mode good_mode;
    enum flags perms;
    enum flags bad_perms;
    struct node *head;
    struct node *dangling;
    int *misaligned;
    const char *label;
    void (*callback)(void);
    void (*bad_callback)(void);
    char *end;
    struct node nodes[3];
};

struct state STATE;
bool LONE_BOOL;
static int NUMBERS[4] = {1, 2, 3, 4};

static void tick(void) {}

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    /* Two pages, the second unmapped again: a pointer into it dangles. */
    char *pages = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *rwx = mmap(NULL, page, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *rx = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED || rwx == MAP_FAILED || rx == MAP_FAILED)
        return 2;
    munmap(pages + page, page);
    rx[0] = (char)0xc3; /* ret */
    if (mprotect(rx, page, PROT_READ | PROT_EXEC) != 0)
        return 3;

    static struct node heap_node = {0, 7};
    *(volatile unsigned char *)&STATE.ready = 2;
    STATE.ok = true;
    *(volatile int *)&STATE.mode = 7;
    STATE.good_mode = MODE_RUN;
    STATE.perms = F_READ | F_WRITE;
    *(volatile int *)&STATE.bad_perms = 8;
    STATE.head = &heap_node;
    STATE.dangling = (struct node *)(pages + page + 64);
    STATE.misaligned = (int *)((char *)NUMBERS + 1);
    STATE.label = "cbroken";
    STATE.callback = tick;
    STATE.bad_callback = (void (*)(void))(void *)NUMBERS;
    STATE.end = pages + page;
    STATE.nodes[0].next = &STATE.nodes[2];
    STATE.nodes[1].next = (struct node *)(pages + page + 128);
    STATE.nodes[2].next = NULL;
    *(volatile unsigned char *)&LONE_BOOL = 5;

    printf("address STATE %p\n", (void *)&STATE);
    printf("address LONE_BOOL %p\n", (void *)&LONE_BOOL);
    printf("address rwx %p\n", (void *)rwx);
    printf("address rx %p\n", (void *)rx);
    printf("address end %p\n", (void *)(pages + page));
    printf("ready\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    tick();
    return NUMBERS[0] == 1 ? 0 : 1;
}
