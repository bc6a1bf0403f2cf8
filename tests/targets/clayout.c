/* clayout: a C target for `memzinc layout`. The tests compile it with `gcc -g` and compare the
 * layouts memzinc suggests with what they compute themselves (sorting members by decreasing
 * alignment gives the smallest size when nothing is hot). It prints `size NAME N` for each
 * struct and `ready`, then waits until stdin closes so the test can snapshot it.
 *
 * badly_padded        nine members in the worst order: 64 bytes, 35 of them used
 * badly_padded_twin   the same shape under other names (solved once: shapes are deduplicated)
 * hot_cold            three hot members spread over two cache lines (flag in the first, counter and state in the second)
 * already_tight       no holes: reported only with --all, never solved
 * packed_one          __attribute__((packed)): skipped, natural alignment does not explain it
 */
#include <stdint.h>
#include <stdio.h>

struct badly_padded {
    char a;
    double b;
    char c;
    int d;
    short e;
    void *f;
    char g;
    long h;
    short i;
};

struct badly_padded_twin {
    char tag;
    double ratio;
    char kind;
    int count;
    short port;
    void *owner;
    char flag;
    long total;
    short mode;
};

struct hot_cold {
    char flag;
    char cold_a[60];
    long counter;
    char cold_b[50];
    int state;
    double cold_c[4];
};

struct already_tight {
    long x;
    int y;
    short z;
    char w[2];
};

struct __attribute__((packed)) packed_one {
    char a;
    int b;
};

struct badly_padded BP = {1, 2.0, 3, 4, 5, 0, 7, 8, 9};
struct badly_padded_twin BPT = {1, 2.0, 3, 4, 5, 0, 7, 8, 9};
struct hot_cold HC = {.flag = 1, .counter = 2, .state = 3};
struct already_tight AT = {1, 2, 3, {4, 5}};
struct packed_one PO = {1, 2};

int main(void) {
    printf("size badly_padded %zu\n", sizeof(struct badly_padded));
    printf("size badly_padded_twin %zu\n", sizeof(struct badly_padded_twin));
    printf("size hot_cold %zu\n", sizeof(struct hot_cold));
    printf("size already_tight %zu\n", sizeof(struct already_tight));
    printf("size packed_one %zu\n", sizeof(struct packed_one));
    printf("ready\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return BP.a + BPT.tag + HC.flag + (int)AT.x + PO.a == 5 ? 0 : 1;
}
