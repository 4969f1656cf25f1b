/*
 * What an asymmetric barrier would cost shmbus's waiter protocol
 * (docs/LAYOUT.md 7.4, docs/BENCHMARKS.md "Issue 14, eleventh pass").
 *
 * Today a notify-on publish pays one full fence (P1) so that a reader
 * about to sleep (S1, S2) cannot miss it. The alternative keeps only a
 * compiler fence in the publisher and has every reader force the barrier
 * on the publisher's CPU with membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
 * before it sleeps. This probe measures both sides of that trade on the
 * machine it runs on:
 *
 *   - a "publisher" process, pinned to CPU 1 and registered for global
 *     expedited membarrier, loops store / fence / load: with a full fence
 *     (today's P1) or with a compiler fence only (the alternative);
 *   - a "reader" process, pinned to CPU 0, either stays idle or calls
 *     membarrier(GLOBAL_EXPEDITED) back to back, as readers going to sleep
 *     would, timing each call;
 *   - it reports the publisher's cost per iteration over the same window
 *     in both cases, so the time an IPI takes from the publisher's CPU is
 *     (loop with storm - loop without) / calls;
 *   - it reports how much of each window the publisher spent on its CPU
 *     (/proc/PID/schedstat): membarrier interrupts only CPUs that are
 *     running a registered process at that moment, so on a busy machine
 *     it often has no one to interrupt and reads falsely cheap.
 *
 * Build and run (x86_64 or ARM Linux with two CPUs, no root needed):
 *   gcc -O2 -o /tmp/membarrier bench/probes/membarrier.c
 *   /tmp/membarrier
 * It needs Linux >= 4.16 (MEMBARRIER_CMD_GLOBAL_EXPEDITED) and exits 2 if
 * the kernel lacks it. Nothing is left behind: the shared page is an
 * anonymous mapping.
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CALLS 20000

static int membarrier(int cmd) { return (int)syscall(__NR_membarrier, cmd, 0, 0); }

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return sched_setaffinity(0, sizeof s, &s);
}

struct shared {
    _Atomic long stop, go, iters;
    char pad0[64];
    _Atomic unsigned slot[16];   /* the line a publish stores to */
    char pad1[64];
    _Atomic unsigned waiters;    /* the line (P2) loads */
};

/* Nanoseconds `pid` has spent on a CPU (/proc/PID/schedstat), or -1. */
static double on_cpu_ns(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    unsigned long long run = 0;
    int ok = fscanf(f, "%llu", &run);
    fclose(f);
    return ok == 1 ? (double)run : -1;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One window: returns the publisher's ns per iteration during it; fills
 * `calls` (sorted) with the reader's membarrier times when `storm`. */
static double window(int full_fence, int storm, double *calls, double *share) {
    struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { perror("mmap"); exit(1); }
    pid_t child = fork();
    if (child < 0) { perror("fork"); exit(1); }
    if (child == 0) {
        if (pin(1)) { perror("sched_setaffinity(1)"); _exit(1); }
        if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)) { perror("register"); _exit(1); }
        long n = 0;
        unsigned sum = 0;
        atomic_store(&sh->go, 1);
        while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
            for (int k = 0; k < 1000; k++) {
                atomic_store_explicit(&sh->slot[0], (unsigned)++n, memory_order_release);
                if (full_fence)
                    atomic_thread_fence(memory_order_seq_cst);
                else
                    atomic_signal_fence(memory_order_seq_cst);
                sum += atomic_load_explicit(&sh->waiters, memory_order_relaxed);
            }
            atomic_store_explicit(&sh->iters, n, memory_order_relaxed);
        }
        _exit(sum == 12345 ? 3 : 0);
    }
    if (pin(0)) { perror("sched_setaffinity(0)"); exit(1); }
    while (!atomic_load(&sh->go)) {}
    usleep(50000);
    long n0 = atomic_load(&sh->iters);
    double c0 = on_cpu_ns(child);
    double t0 = now_ns();
    if (storm) {
        for (int i = 0; i < CALLS; i++) {
            double a = now_ns();
            if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)) { perror("membarrier"); exit(1); }
            calls[i] = now_ns() - a;
        }
    } else {
        usleep(300000);
    }
    double el = now_ns() - t0;
    long n1 = atomic_load(&sh->iters);
    double c1 = on_cpu_ns(child);
    *share = (c0 < 0 || c1 < 0) ? -1 : (c1 - c0) / el;
    atomic_store(&sh->stop, 1);
    int status;
    waitpid(child, &status, 0);
    munmap(sh, 4096);
    if (storm) qsort(calls, CALLS, sizeof(double), by_value);
    return el / (double)(n1 - n0);
}

int main(void) {
    int q = membarrier(MEMBARRIER_CMD_QUERY);
    if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED)) {
        fprintf(stderr, "this kernel has no MEMBARRIER_CMD_GLOBAL_EXPEDITED\n");
        return 2;
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, "one CPU: membarrier returns at once and no barrier costs anything across CPUs\n");
        return 2;
    }
    static double calls[CALLS];
    for (int full = 1; full >= 0; full--) {
        double share_quiet, share_busy;
        double quiet = window(full, 0, calls, &share_quiet);
        double busy = window(full, 1, calls, &share_busy);
        double per_call_window = 0;
        for (int i = 0; i < CALLS; i++) per_call_window += calls[i];
        per_call_window /= CALLS;
        /* Publisher CPU time lost per IPI: the window's iterations at the
         * storm's rate versus the quiet rate. */
        double lost = per_call_window * (1.0 - quiet / busy);
        printf("publisher with %-14s: %6.2f ns per store+fence+load quiet, %6.2f ns during a membarrier storm\n",
               full ? "a full fence" : "a compiler fence", quiet, busy);
        printf("  reader's membarrier(GLOBAL_EXPEDITED): median %.0f ns, p90 %.0f ns, p99 %.0f ns;"
               " publisher CPU lost per call: %.0f ns\n",
               calls[CALLS / 2], calls[CALLS * 9 / 10], calls[CALLS * 99 / 100], lost);
        printf("  the publisher was on its CPU %.0f%% of the quiet window, %.0f%% of the storm%s\n",
               100 * share_quiet, 100 * share_busy,
               share_quiet < 0.95 || share_busy < 0.95
                   ? " (under 95%: another process shared its CPU, so membarrier often had no one to"
                     " interrupt; run it on an idle machine)"
                   : "");
    }
    return 0;
}
