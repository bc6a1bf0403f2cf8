/* zdtm-style target for checkpoint/restore tests (tests/tests/zdtm.rs).
 *
 *   zdtm_counter OUT [--heap-mib N] [--input FILE] [--threads N] [--events 1] [--signals 1]
 *                [--timers 1] [--limits 1] [--caps 1] [--ptimer 1]
 *
 * Every 5 ms step n (1, 2, ...) appends one line "n ..." to OUT through a file descriptor
 * whose offset is the only record of what was written, then sleeps in nanosleep, so a
 * checkpoint usually lands mid-sleep. A restored process must go on with n+1: no gap, no
 * repeat. Options add state that must survive:
 *   --heap-mib N  N MiB of heap, every page filled with a pattern of its index; each step
 *                 re-checks one page and writes "ok" or "bad".
 *   --input FILE  each step reads the next line of FILE (its fd offset) and writes it out.
 *   --threads N   N-1 extra threads each counting in memory; the line says "threads ok"
 *                 while every one of them advanced within the last 100 steps.
 *   --events 1    an event loop's kernel objects: an epoll instance watching an eventfd and
 *                 a self-pipe, both non-blocking. Each step waits on the epoll, reads the
 *                 pipe's pending record (the previous step's number) and the eventfd's count
 *                 (the step's own number), then leaves the next ones pending: "events ok".
 *   --signals 1   SIGUSR1 (sigqueue'd to the process, value 4242) and SIGUSR2 (tgkill'd to the
 *                 main thread) blocked and pending between steps; each step takes both with
 *                 their siginfo and sends them again: "signals ok".
 *   --timers 1    a timerfd firing every millisecond and a signalfd for SIGRTMIN+1 (blocked):
 *                 each step sends itself SIGRTMIN+1 and must read it from the signalfd, and
 *                 the timer must have fired within the last 20 steps: "timers ok".
 *   --limits 1    lowers RLIMIT_NOFILE to 321/654 and RLIMIT_CORE to 0/12345678; each step
 *                 checks them: "limits ok".
 *   --caps 1      (as root) drops CAP_NET_RAW from its bounding set and CAP_SYS_ADMIN from its
 *                 effective and permitted sets and makes itself non-dumpable; each step
 *                 compares its Cap* status lines and dumpable flag with what they were then:
 *                 "caps ok".
 *   --ptimer 1    a POSIX timer (timer_create) signalling SIGRTMIN+2 (blocked) with value 77
 *                 every millisecond; each step takes its signals, which must carry the value,
 *                 and the timer must still be there by its id and have fired within the last
 *                 20 steps: "ptimer ok".
 */
#define _GNU_SOURCE /* pipe2 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t thread_counts[64];

static void *spin(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    struct timespec ts = {0, 1000000};
    for (;;) {
        thread_counts[i]++;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The Cap* lines of /proc/self/status, concatenated. */
static void cap_lines(char *out, size_t size) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3) && strlen(out) + strlen(line) < size) strcat(out, line);
    if (f) fclose(f);
    snprintf(out + strlen(out), size - strlen(out), "dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

static uint64_t pattern(size_t page, size_t word) { return (page * 0x9e3779b97f4a7c15ULL) ^ word; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT [--heap-mib N] [--input FILE] [--threads N] [--events 1] [--signals 1] [--timers 1] [--limits 1] [--caps 1] [--ptimer 1]\n", argv[0]);
        return 2;
    }
    size_t heap_mib = 0, threads = 1, events = 0, signals = 0, timers = 0, limits = 0, caps = 0, ptimer = 0;
    const char *input = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--heap-mib")) heap_mib = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--input")) input = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--events")) events = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--signals")) signals = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--timers")) timers = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--limits")) limits = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--caps")) caps = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--ptimer")) ptimer = strtoul(argv[i + 1], NULL, 10);
    }
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) { perror("open OUT"); return 1; }
    FILE *in = NULL;
    if (input && !(in = fopen(input, "r"))) { perror("open --input"); return 1; }

    uint64_t *heap = NULL;
    size_t pages = heap_mib * 256, words = 4096 / sizeof(uint64_t);
    if (pages) {
        heap = malloc(pages * 4096);
        if (!heap) { perror("malloc"); return 1; }
        for (size_t p = 0; p < pages; p++)
            for (size_t w = 0; w < words; w++) heap[p * words + w] = pattern(p, w);
    }
    for (size_t t = 1; t < threads && t < 64; t++) {
        pthread_t th;
        pthread_create(&th, NULL, spin, (void *)(uintptr_t)t);
    }

    int efd = -1, ep = -1, pipefd[2] = {-1, -1};
    if (events) {
        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (efd < 0 || ep < 0 || pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) < 0) { perror("events"); return 1; }
        struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = 1}, e2 = {.events = EPOLLIN, .data.u64 = 2};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e1) || epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &e2)) {
            perror("epoll_ctl");
            return 1;
        }
        uint64_t zero = 0, one = 1;
        if (write(pipefd[1], &zero, 8) != 8 || write(efd, &one, 8) != 8) return 1;
    }

    sigset_t usr1, usr2, both;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    union sigval value = {.sival_int = 4242};
    if (signals) {
        sigprocmask(SIG_BLOCK, &both, NULL);
        if (sigqueue(getpid(), SIGUSR1, value) || syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR2)) {
            perror("signals");
            return 1;
        }
    }

    struct rlimit files = {321, 654}, core = {0, 12345678};
    if (limits && (setrlimit(RLIMIT_NOFILE, &files) || setrlimit(RLIMIT_CORE, &core))) {
        perror("setrlimit");
        return 1;
    }
    char caps_then[512] = "";
    if (caps) {
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) || syscall(SYS_capget, &header, data)) { perror("caps"); return 1; }
        data[0].effective &= ~(1u << CAP_SYS_ADMIN);
        data[0].permitted &= ~(1u << CAP_SYS_ADMIN);
        if (syscall(SYS_capset, &header, data) || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) { perror("capset"); return 1; }
        cap_lines(caps_then, sizeof caps_then);
    }
    timer_t ptimer_id;
    sigset_t ptimer_set;
    uint64_t ptimer_fired = 0;
    sigemptyset(&ptimer_set);
    sigaddset(&ptimer_set, SIGRTMIN + 2);
    if (ptimer) {
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 2, .sigev_value.sival_int = 77};
        struct itimerspec every_ms = {{0, 1000000}, {0, 1000000}};
        sigprocmask(SIG_BLOCK, &ptimer_set, NULL);
        if (timer_create(CLOCK_MONOTONIC, &ev, &ptimer_id) || timer_settime(ptimer_id, 0, &every_ms, NULL)) {
            perror("timer_create");
            return 1;
        }
    }
    int tfd = -1, sfd = -1;
    uint64_t last_fired = 0;
    if (timers) {
        sigset_t rt;
        sigemptyset(&rt);
        sigaddset(&rt, SIGRTMIN + 1);
        sigprocmask(SIG_BLOCK, &rt, NULL);
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        sfd = signalfd(-1, &rt, SFD_NONBLOCK | SFD_CLOEXEC);
        struct itimerspec every_ms = {{0, 1000000}, {0, 1000000}};
        if (tfd < 0 || sfd < 0 || timerfd_settime(tfd, 0, &every_ms, NULL)) { perror("timers"); return 1; }
    }

    uint64_t last[64] = {0}, last_moved[64] = {0};
    struct timespec ts = {0, 5000000};
    for (uint64_t n = 1;; n++) {
        char line[512], extra[256] = "";
        if (heap) {
            size_t p = (n * 7919) % pages;
            int good = 1;
            for (size_t w = 0; w < words; w++) good &= heap[p * words + w] == pattern(p, w);
            snprintf(extra, sizeof extra, " heap %s", good ? "ok" : "bad");
        }
        if (in) {
            char buf[128];
            if (fgets(buf, sizeof buf, in)) {
                buf[strcspn(buf, "\n")] = 0;
                snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " input %s", buf);
            }
        }
        if (threads > 1) {
            /* A thread counts as moving if it advanced within the last 100 steps (0.5 s):
             * a loaded machine may not run it every 5 ms, a lost thread never again. */
            int moving = 1;
            for (size_t t = 1; t < threads && t < 64; t++) {
                if (thread_counts[t] != last[t]) {
                    last[t] = thread_counts[t];
                    last_moved[t] = n;
                }
                moving &= n - last_moved[t] < 100;
            }
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " threads %s", moving ? "ok" : "stuck");
        }
        if (events) {
            struct epoll_event ev[4];
            int ready = epoll_wait(ep, ev, 4, 1000), mask = 0;
            for (int i = 0; i < ready; i++) mask |= 1 << ev[i].data.u64;
            uint64_t record = ~0ULL, count = 0;
            if (read(pipefd[0], &record, 8) != 8) record = ~0ULL;
            if (read(efd, &count, 8) != 8) count = 0;
            int good = mask == 6 && record == n - 1 && count == n;
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), good ? " events ok" : " events bad ready=%d record=%llu count=%llu",
                     mask, (unsigned long long)record, (unsigned long long)count);
            uint64_t next = n + 1;
            if (write(pipefd[1], &n, 8) != 8 || write(efd, &next, 8) != 8) return 1;
        }
        if (signals) {
            struct timespec zero = {0, 0};
            siginfo_t si;
            int good = sigtimedwait(&usr1, &si, &zero) == SIGUSR1 && si.si_code == SI_QUEUE && si.si_value.sival_int == 4242;
            good &= sigtimedwait(&usr2, &si, &zero) == SIGUSR2 && si.si_pid == getpid();
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), good ? " signals ok" : " signals lost");
            if (sigqueue(getpid(), SIGUSR1, value) || syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR2)) return 1;
        }
        if (timers) {
            uint64_t expirations;
            if (read(tfd, &expirations, 8) == 8 && expirations > 0) last_fired = n;
            struct signalfd_siginfo ssi;
            kill(getpid(), SIGRTMIN + 1);
            int got = read(sfd, &ssi, sizeof ssi) == sizeof ssi && ssi.ssi_signo == (uint32_t)(SIGRTMIN + 1);
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), got && n - last_fired < 20 ? " timers ok" : " timers bad");
        }
        if (limits) {
            struct rlimit f, c;
            int good = !getrlimit(RLIMIT_NOFILE, &f) && !getrlimit(RLIMIT_CORE, &c) && f.rlim_cur == files.rlim_cur &&
                       f.rlim_max == files.rlim_max && c.rlim_cur == core.rlim_cur && c.rlim_max == core.rlim_max;
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), good ? " limits ok" : " limits lost");
        }
        if (ptimer) {
            struct timespec zero = {0, 0};
            struct itimerspec left;
            siginfo_t si;
            int good = timer_gettime(ptimer_id, &left) == 0;
            while (sigtimedwait(&ptimer_set, &si, &zero) == SIGRTMIN + 2) {
                good &= si.si_value.sival_int == 77;
                ptimer_fired = n;
            }
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), good && n - ptimer_fired < 20 ? " ptimer ok" : " ptimer bad");
        }
        if (caps) {
            char now[512];
            cap_lines(now, sizeof now);
            snprintf(extra + strlen(extra), sizeof extra - strlen(extra), strcmp(now, caps_then) ? " caps changed" : " caps ok");
        }
        int len = snprintf(line, sizeof line, "%llu%s\n", (unsigned long long)n, extra);
        if (write(out, line, len) != len) return 1;
        nanosleep(&ts, NULL);
    }
}
