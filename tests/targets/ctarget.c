/* ctarget: memzinc's C sample target, for checking that gdb reads memzinc cores of C programs.
 *
 * A known global struct whose fields are set at run time (so only a core holding the live
 * memory shows them: the executable's .data still says "initial"), and a second thread, so the
 * core has two NT_PRSTATUS notes. With a FILE argument it also writes one page to FILE and maps
 * two pages of it privately: the second page lies past the end of the file, so reading it
 * faults (SIGBUS), and a snapshot must record it as unreadable. Prints "ready pid=N map=ADDR"
 * (ADDR 0 without FILE) once set up, then sleeps forever.
 *
 * Built by the tests: gcc -g -O0 -pthread -o ctarget tests/targets/ctarget.c
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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

int main(int argc, char **argv) {
    pthread_t thread;
    void *map = NULL;
    if (argc > 1) {
        char page[4096];
        int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
        memset(page, 'm', sizeof page);
        if (fd < 0 || write(fd, page, sizeof page) != (ssize_t)sizeof page)
            return 2;
        map = mmap(NULL, 2 * sizeof page, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
            return 3;
        close(fd);
    }
    CTARGET_STATE.pid = (int)getpid();
    CTARGET_STATE.answer = 42;
    strcpy(CTARGET_STATE.label, "live-memory");
    if (pthread_create(&thread, NULL, worker, NULL) != 0)
        return 1;
    printf("ready pid=%d map=%p\n", CTARGET_STATE.pid, map);
    fflush(stdout);
    for (;;)
        sleep(1);
}
