/* zdtm-style target for checkpoint/restore of sockets and pipes (tests/tests/zdtm.rs).
 *
 *   zdtm_sock OUT [--tcp PORT] [--tcp6 PORT] [--unix PATH] [--log PATH] [--dlog PATH] [--pair 1] [--stdout 1]
 *                 [--udp 1] [--inotify 1]
 *
 * Every step (a poll of at most 5 ms) appends one line "n ..." to OUT through a file
 * descriptor whose offset is the only record of what was written. Options:
 *   --tcp PORT   listens on 127.0.0.1:PORT (SO_REUSEADDR, backlog 7) and echoes every line a
 *                client sends as "echo LINE"; any number of clients.
 *   --tcp6 PORT  the same on [::1]:PORT (IPV6_V6ONLY, SO_REUSEADDR, backlog 9).
 *   --unix PATH  the same on a unix stream socket bound at PATH.
 *   --log PATH   connects a unix stream socket to PATH (a logger outside) and sends it
 *                "log n" every step.
 *   --dlog PATH  connects a unix datagram socket to PATH (a syslog-style logger outside) and
 *                sends it "dlog n" every step (without waiting when its queue is full).
 *   --pair 1     a unix socketpair; between steps one end holds the record "n" written by
 *                the previous step; each step reads it from the other end, checks it and
 *                writes its own: "pair ok" (or "pair bad").
 *   --stdout 1   writes "out n" to stdout every step (a pipe to someone else, say).
 *   --udp 1      holds a UDP socket (memzinc refuses to checkpoint it).
 *   --inotify 1  holds an inotify descriptor (memzinc refuses to checkpoint it).
 * A client that closes its side is kept (half-closed, CLOSE_WAIT) and no longer polled.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX 64

static int listeners[3] = {-1, -1, -1};
static int clients[MAX];
static int nclients;

static void echo(int fd, int *live) {
    char buf[4096], out[4200];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n == 0) {
        *live = 0; /* kept open: half-closed */
        return;
    }
    if (n < 0) return;
    buf[n] = 0;
    /* Lines are short and arrive whole on loopback. */
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int len = snprintf(out, sizeof out, "echo %s\n", line);
        send(fd, out, len, MSG_NOSIGNAL);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return 3;
    int pair[2] = {-1, -1}, logfd = -1, dlogfd = -1, to_stdout = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (!strcmp(opt, "--tcp")) {
            int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(val))};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 7)) return 4;
            listeners[0] = fd;
        } else if (!strcmp(opt, "--tcp6")) {
            int fd = socket(AF_INET6, SOCK_STREAM, 0), one = 1;
            struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(val))};
            sa.sin6_addr = in6addr_loopback;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 9)) return 11;
            listeners[2] = fd;
        } else if (!strcmp(opt, "--unix")) {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            strncpy(sa.sun_path, val, sizeof sa.sun_path - 1);
            if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 5)) return 5;
            listeners[1] = fd;
        } else if (!strcmp(opt, "--log")) {
            logfd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            strncpy(sa.sun_path, val, sizeof sa.sun_path - 1);
            if (connect(logfd, (struct sockaddr *)&sa, sizeof sa)) return 6;
        } else if (!strcmp(opt, "--dlog")) {
            dlogfd = socket(AF_UNIX, SOCK_DGRAM, 0);
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            strncpy(sa.sun_path, val, sizeof sa.sun_path - 1);
            if (connect(dlogfd, (struct sockaddr *)&sa, sizeof sa)) return 10;
        } else if (!strcmp(opt, "--pair")) {
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) return 7;
            unsigned long zero = 0;
            write(pair[0], &zero, sizeof zero);
        } else if (!strcmp(opt, "--stdout")) {
            to_stdout = 1;
        } else if (!strcmp(opt, "--udp")) {
            int fd = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) return 8;
        } else if (!strcmp(opt, "--inotify")) {
            if (inotify_init1(IN_CLOEXEC) < 0) return 9;
        }
    }
    int live[MAX];
    for (unsigned long n = 1;; n++) {
        struct pollfd p[3 + MAX];
        int np = 0, who[3 + MAX];
        for (int l = 0; l < 3; l++)
            if (listeners[l] >= 0) who[np] = -1 - l, p[np++] = (struct pollfd){listeners[l], POLLIN, 0};
        for (int c = 0; c < nclients; c++)
            if (live[c]) who[np] = c, p[np++] = (struct pollfd){clients[c], POLLIN, 0};
        if (poll(p, np, 5) > 0) {
            for (int i = 0; i < np; i++) {
                if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
                if (who[i] < 0) {
                    int fd = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
                    if (fd >= 0 && nclients < MAX) live[nclients] = 1, clients[nclients++] = fd;
                } else {
                    echo(p[i].fd, &live[who[i]]);
                }
            }
        } else if (np == 0) {
            usleep(5000);
        }
        char line[128];
        int len = snprintf(line, sizeof line, "%lu", n);
        if (pair[0] >= 0) {
            unsigned long got = ~0UL;
            int ok = read(pair[1], &got, sizeof got) == sizeof got && got == n - 1;
            write(pair[0], &n, sizeof n);
            len += snprintf(line + len, sizeof line - len, " pair %s", ok ? "ok" : "bad");
        }
        line[len++] = '\n';
        write(out, line, len);
        if (logfd >= 0) {
            char msg[64];
            int m = snprintf(msg, sizeof msg, "log %lu\n", n);
            send(logfd, msg, m, MSG_NOSIGNAL);
        }
        if (dlogfd >= 0) {
            char msg[64];
            int m = snprintf(msg, sizeof msg, "dlog %lu", n);
            send(dlogfd, msg, m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (to_stdout) {
            char msg[64];
            int m = snprintf(msg, sizeof msg, "out %lu\n", n);
            write(1, msg, m);
        }
    }
}
