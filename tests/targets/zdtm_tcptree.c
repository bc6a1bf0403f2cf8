/* A TCP echo server and its client in one process tree (not written for memzinc): the parent
 * listens on 127.0.0.1:PORT and forks a client, which connects; the parent echoes every line
 * any client sends ("echo " + the line), serving up to 8 clients with poll. The two also share
 * a unix socketpair made before the fork, over which the parent answers "pong n" to "ping n".
 * Every 5 ms step n of the client sends "ping n" over both, reads both answers and appends
 * "n ok" to OUT ("n bad" if an answer is wrong, "n gone" if a connection ended).
 *
 *   zdtm_tcptree OUT PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int read_line(int fd, char *buf, int cap) {
    int n = 0;
    while (n < cap - 1) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0) return -1;
        if (c == '\n') break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return n;
}

static void client(const char *out_path, int port, int pair) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) _exit(3);
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    for (long n = 1;; n++) {
        char msg[64], want[80], got[128], line[64];
        int len = snprintf(msg, sizeof msg, "ping %ld\n", n);
        const char *verdict = "ok";
        if (write(s, msg, len) != len || read_line(s, got, sizeof got) < 0) {
            verdict = "gone";
        } else {
            snprintf(want, sizeof want, "echo ping %ld", n);
            if (strcmp(got, want)) verdict = "bad";
        }
        if (write(pair, msg, len) != len || read_line(pair, got, sizeof got) < 0) {
            verdict = "gone";
        } else {
            snprintf(want, sizeof want, "pong %ld", n);
            if (strcmp(got, want) && verdict[0] == 'o') verdict = "bad";
        }
        len = snprintf(line, sizeof line, "%ld %s\n", n, verdict);
        if (write(out, line, len) != len) _exit(4);
        if (verdict[0] == 'g') _exit(5);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8)) return 2;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) return 2;
    if (fork() == 0) {
        close(l);
        close(sp[0]);
        client(argv[1], port, sp[1]);
    }
    close(sp[1]);
    struct pollfd fds[10] = {{l, POLLIN, 0}, {sp[0], POLLIN, 0}};
    int n = 2;
    for (;;) {
        if (poll(fds, n, -1) < 0) continue;
        if (fds[1].revents & POLLIN) {
            char line[128], reply[160];
            long k;
            if (read_line(sp[0], line, sizeof line) < 0 || sscanf(line, "ping %ld", &k) != 1) return 3;
            int len = snprintf(reply, sizeof reply, "pong %ld\n", k);
            if (write(sp[0], reply, len) != len) return 3;
        }
        if (fds[0].revents & POLLIN && n < 10) {
            int c = accept(l, NULL, NULL);
            if (c >= 0) fds[n++] = (struct pollfd){c, POLLIN, 0};
        }
        for (int i = 2; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
            char line[128], reply[160];
            if (read_line(fds[i].fd, line, sizeof line) < 0) {
                close(fds[i].fd);
                fds[i--] = fds[--n];
                continue;
            }
            int len = snprintf(reply, sizeof reply, "echo %s\n", line);
            if (write(fds[i].fd, reply, len) != len) return 3;
        }
    }
}
