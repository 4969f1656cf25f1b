/* A tiny test harness for the C tests: CHECK(name, condition) counts and
 * prints; EXPECT_RC(name, call, code) also prints shmbus_last_error() when
 * the status differs. finish() prints "N passed, N failed" and returns the
 * exit status. */
#ifndef SHMBUS_CHECK_H
#define SHMBUS_CHECK_H
#include <stdio.h>
#include <string.h>
#include "shmbus.h"

static int check_passed, check_failed;

static void check(const char *name, int ok, const char *detail) {
    if (ok) {
        check_passed++;
        printf("ok   %s\n", name);
    } else {
        check_failed++;
        printf("FAIL %s%s%s\n", name, detail ? ": " : "", detail ? detail : "");
    }
    fflush(stdout);
}

#define CHECK(name, cond) check((name), (cond), NULL)

static int expect_rc(const char *name, int32_t rc, int32_t want) {
    char d[512];
    snprintf(d, sizeof d, "status %d (%s), expected %d (%s); last error: %s", (int)rc, shmbus_strerror(rc),
             (int)want, shmbus_strerror(want), shmbus_last_error());
    check(name, rc == want, d);
    return rc == want;
}
#define EXPECT_RC(name, call, want) expect_rc((name), (call), (want))

/* The last error contains `needle`. */
static void expect_msg(const char *name, const char *needle) {
    char d[512];
    snprintf(d, sizeof d, "message '%s' lacks '%s'", shmbus_last_error(), needle);
    check(name, strstr(shmbus_last_error(), needle) != NULL, d);
}

static int finish(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}
#endif
