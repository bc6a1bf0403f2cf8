/* A parent with two children it has not waited for yet (zombies), as a server between a
 * child's exit and its SIGCHLD handling (not written for memzinc): one child exited with code
 * 7, the other was killed by SIGTERM. Every 5 ms step n appends "n waiting" to OUT; once the
 * file OUT.go exists the parent waits for both and appends "n reaped exit E signal S".
 *
 *   zdtm_zombie OUT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t exited = fork();
    if (exited == 0) _exit(7);
    pid_t killed = fork();
    if (killed == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(1);
    }
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    char go[4096];
    snprintf(go, sizeof go, "%s.go", argv[1]);
    for (long n = 1;; n++) {
        char line[96];
        int len;
        if (access(go, F_OK) == 0) {
            int a = 0, b = 0;
            if (waitpid(exited, &a, 0) != exited || waitpid(killed, &b, 0) != killed) return 3;
            len = snprintf(line, sizeof line, "%ld reaped exit %d signal %d\n", n, WIFEXITED(a) ? WEXITSTATUS(a) : -1,
                           WIFSIGNALED(b) ? WTERMSIG(b) : -1);
            if (write(out, line, len) != len) return 4;
            for (;;) pause();
        }
        len = snprintf(line, sizeof line, "%ld waiting\n", n);
        if (write(out, line, len) != len) return 4;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}
