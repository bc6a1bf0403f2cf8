/* A process tree that never stands still (not written for memzinc): every step the parent forks
 * a child that forks a grandchild and exits at once; the grandchild lives 20 ms. The parent reaps
 * its children without blocking and appends "n" to OUT every step (about every 2 ms), so its
 * progress shows it runs.
 *
 *   zdtm_forker OUT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    for (long n = 1;; n++) {
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) {
                struct timespec ts = {0, 20000000};
                nanosleep(&ts, NULL);
            }
            _exit(0);
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        char line[32];
        int len = snprintf(line, sizeof line, "%ld\n", n);
        if (write(out, line, len) != len) return 3;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}
