/* ctypes: a C target for memzinc's DWARF reader. The tests compile it with `gcc -g`, run it and
 * compare what DWARF says about GADGET's types with what the compiler itself reports here
 * (sizeof, offsetof, addresses). It prints one fact per line, then waits until stdin closes so
 * the test can read its live memory.
 *
 *   address NAME 0x...        runtime address of a global
 *   size TYPE N               sizeof
 *   offset TYPE.FIELD N       offsetof
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum color { RED = 1, GREEN = 2, ULTRAVIOLET = -3 };

struct point {
    int16_t x;
    int32_t y;
};

union value {
    uint32_t u;
    float f;
    unsigned char bytes[6];
};

struct node {
    struct node *next;
    int id;
};

typedef struct point point_t;

struct gadget {
    uint8_t tag;
    point_t origin;
    struct point *cursor;
    const char *label;
    int32_t samples[5];
    uint16_t grid[2][3];
    union value value;
    enum color color;
    struct node *head;
    double ratio;
    _Bool ready;
    unsigned flags : 3;
    unsigned mode : 5;
    char name[7];
    int64_t total;
};

static struct node NODES[2] = {{&NODES[1], 1}, {0, 2}};

struct gadget GADGET = {
    .tag = 7,
    .origin = {-2, 40000},
    .cursor = &GADGET.origin,
    .label = "gadget",
    .samples = {1, -2, 3, -4, 5},
    .grid = {{1, 2, 3}, {4, 5, 6}},
    .value = {.u = 0xdeadbeef},
    .color = ULTRAVIOLET,
    .head = &NODES[0],
    .ratio = 0.5,
    .ready = 1,
    .flags = 5,
    .mode = 17,
    .name = "abc",
    .total = -1234567890123LL,
};

#define OFFSET(type, field) printf("offset %s.%s %zu\n", #type, #field, offsetof(struct type, field))

int main(void) {
    static int calls = 41;
    calls++;
    printf("address GADGET %p\n", (void *)&GADGET);
    printf("address calls %p\n", (void *)&calls);
    printf("address NODES %p\n", (void *)NODES);
    printf("size gadget %zu\n", sizeof(struct gadget));
    printf("size point %zu\n", sizeof(struct point));
    printf("size value %zu\n", sizeof(union value));
    printf("size color %zu\n", sizeof(enum color));
    printf("size node %zu\n", sizeof(struct node));
    OFFSET(gadget, tag);
    OFFSET(gadget, origin);
    OFFSET(gadget, cursor);
    OFFSET(gadget, label);
    OFFSET(gadget, samples);
    OFFSET(gadget, grid);
    OFFSET(gadget, value);
    OFFSET(gadget, color);
    OFFSET(gadget, head);
    OFFSET(gadget, ratio);
    OFFSET(gadget, ready);
    OFFSET(gadget, name);
    OFFSET(gadget, total);
    OFFSET(point, x);
    OFFSET(point, y);
    OFFSET(node, next);
    OFFSET(node, id);
    printf("ready\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return calls == 42 ? 0 : 1;
}
