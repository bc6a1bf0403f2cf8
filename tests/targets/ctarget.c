/* ctarget: memzinc's C sample target, for checking that gdb reads memzinc cores of C programs.
 *
 * A known global struct whose fields are set at run time (so only a core holding the live
 * memory shows them: the executable's .data still says "initial"), and a second thread, so the
 * core has two NT_PRSTATUS notes. Prints "ready pid=N" once set up, then sleeps forever.
 *
 * Built by the tests: gcc -g -O0 -pthread -o ctarget tests/targets/ctarget.c
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct ctarget_state {
    unsigned int magic;
    int pid;
    long answer;
    char label[16];
};

struct ctarget_state CTARGET_STATE = {0xC0DE0001u, 0, 0, "initial"};

static void *worker(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(void) {
    pthread_t thread;
    CTARGET_STATE.pid = (int)getpid();
    CTARGET_STATE.answer = 42;
    strcpy(CTARGET_STATE.label, "live-memory");
    if (pthread_create(&thread, NULL, worker, NULL) != 0)
        return 1;
    printf("ready pid=%d\n", CTARGET_STATE.pid);
    fflush(stdout);
    for (;;)
        sleep(1);
}
