/* Publish simulated IMU samples from C at a fixed rate: the C twin of the
 * Rust imu-publisher (same message, same values, same options).
 *
 *   shmbus-c-publisher [--name imu] [--key KEY] [--slots 16] [--rate 100]
 *                      [--count N | --duration SECS] [--remove]
 *
 * The message type is declared once (IMU_SCHEMA); a frame is made once and
 * its fields are set before each publish: no allocation per frame.
 *
 * Every 0.5 s it asks shmbus_publisher_check() whether its topic was removed
 * under it (shmbus rm --force, ipcrm, or systemd-logind's RemoveIPC at the
 * user's logout) and, if so, opens it again: without that, a long-running
 * publisher keeps writing into a segment no reader can find.
 *
 * SIGTERM (systemctl stop), Ctrl-C and SIGHUP end it between two frames,
 * never in the middle of one: the handler only notes the signal, the loop
 * stops before its next frame, closes the topic (or removes it with
 * --remove), then ends by the same signal, as the default action would.
 * A publisher killed in the middle of shmbus_publish() leaves that slot
 * mid-write: every in-order reader gets "publisher died mid-publish" for
 * it until the next start repairs it.
 *
 * How to run (two terminals; either side may be the Rust example):
 *   shmbus-c-publisher --rate 1000
 *   imu-subscriber --count 10          # or shmbus-c-subscriber --count 10
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imu_types.h"
#include "shmbus.h"

static int fail(const char *what) {
    fprintf(stderr, "shmbus-c-publisher: %s: %s\n", what, shmbus_last_error());
    return 1;
}

/* The stop signal that arrived (0: none yet). Only stored in the handler. */
static volatile sig_atomic_t stop_sig = 0;

static void on_stop(int sig) { stop_sig = sig; }

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t t_ns) {
    struct timespec t = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
    /* EINTR: a stop signal's handler ran (no SA_RESTART): the loop stops. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0 && !stop_sig) {
    }
}

int main(int argc, char **argv) {
    shmbus_topic topic = {0};
    double rate = 100, duration = 0;
    unsigned long long count = 0;
    int remove = 0;
    topic.name = "imu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--remove") == 0) {
            remove = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: shmbus-c-publisher [--name imu] [--key KEY] [--slots 16] [--rate HZ] "
                            "[--count N | --duration SECS] [--remove]\n");
            return 2;
        }
        i++;
        if (strcmp(a, "--name") == 0) topic.name = v;
        else if (strcmp(a, "--key") == 0) topic.key = (uint32_t)strtoul(v, NULL, 0);
        else if (strcmp(a, "--slots") == 0) topic.slots = (uint32_t)strtoul(v, NULL, 0);
        else if (strcmp(a, "--rate") == 0) rate = atof(v);
        else if (strcmp(a, "--count") == 0) count = strtoull(v, NULL, 0);
        else if (strcmp(a, "--duration") == 0) duration = atof(v);
        else {
            fprintf(stderr, "shmbus-c-publisher: unknown option %s\n", a);
            return 2;
        }
    }
    if (!(rate > 0 && rate <= 1e6)) {
        fprintf(stderr, "shmbus-c-publisher: --rate %g: must be between 0 and 1000000 Hz\n", rate);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    shmbus_schema schema;
    shmbus_publisher pub;
    shmbus_frame frame;
    shmbus_topic_info info;
    if (shmbus_schema_parse(IMU_SCHEMA, &schema) != SHMBUS_OK) return fail("schema");
    if (shmbus_publisher_open(&topic, schema, &pub) != SHMBUS_OK) return fail("open");
    if (shmbus_frame_new(schema, &frame) != SHMBUS_OK) return fail("frame");
    shmbus_publisher_info(pub, &info);
    printf("publishing '%s' at key 0x%08x (shmid %d), %g Hz, frame capacity %u bytes%s\n", info.name, info.key,
           info.shmid, rate, info.frame_capacity, info.created ? "" : ", reopened");
    fflush(stdout);
    if (shmbus_frame_set_str(frame, "frame_id", "imu_link") != SHMBUS_OK) return fail("frame_id");

    uint64_t start = now_ns(), period = (uint64_t)(1e9 / rate);
    uint64_t end = duration > 0 ? start + (uint64_t)(duration * 1e9) : 0;
    uint64_t last_check = start;
    uint32_t seq = 0;
    for (;;) {
        if (stop_sig) break;
        if (count > 0 && seq >= count) break;
        if (end && now_ns() >= end) break;
        if (now_ns() - last_check >= 500000000u) { /* two system calls, twice a second */
            last_check = now_ns();
            if (shmbus_publisher_check(pub) == SHMBUS_ERR_REMOVED) {
                /* Its segment or its lock was removed: close, then open a new topic and lock. */
                fprintf(stderr, "shmbus-c-publisher: %s\n", shmbus_last_error());
                shmbus_publisher_close(pub);
                if (shmbus_publisher_open(&topic, schema, &pub) != SHMBUS_OK) return fail("open again");
                shmbus_publisher_info(pub, &info);
                fprintf(stderr, "shmbus-c-publisher: publishing '%s' again at key 0x%08x (shmid %d)\n", info.name,
                        info.key, info.shmid);
            }
        }
        /* Imu::simulate(seq, t_us): a board rocking slowly on a table. */
        float phase = (float)seq * 0.05f;
        int rc = 0;
        rc |= shmbus_frame_set_u64(frame, "seq", seq);
        rc |= shmbus_frame_set_u64(frame, "t_us", now_ns() / 1000);
        rc |= shmbus_frame_set_f64(frame, "acc[0]", 0.3f * sinf(phase));
        rc |= shmbus_frame_set_f64(frame, "acc[1]", 0.3f * cosf(phase));
        rc |= shmbus_frame_set_f64(frame, "acc[2]", 9.81f);
        rc |= shmbus_frame_set_f64(frame, "gyro[0]", 0.02f * cosf(phase));
        rc |= shmbus_frame_set_f64(frame, "gyro[1]", -0.02f * sinf(phase));
        rc |= shmbus_frame_set_f64(frame, "gyro[2]", 0.0f);
        rc |= shmbus_frame_set_f64(frame, "temp_c", 35.0f + (float)(seq % 100) * 0.01f);
        if (rc != SHMBUS_OK) return fail("set a field");
        if (shmbus_publish(pub, frame, NULL) != SHMBUS_OK) return fail("publish");
        seq++;
        sleep_until(start + period * seq); /* absolute deadlines: no drift */
    }
    printf("published %u frames in %.3f s\n", seq, (double)(now_ns() - start) / 1e9);
    shmbus_frame_close(frame);
    shmbus_schema_close(schema);
    if (remove ? shmbus_publisher_remove(pub) != SHMBUS_OK : shmbus_publisher_close(pub) != SHMBUS_OK)
        return fail("close");
    if (stop_sig) { /* end as the signal's default action would (systemd: a clean stop) */
        signal(stop_sig, SIG_DFL);
        raise(stop_sig);
    }
    return 0;
}
