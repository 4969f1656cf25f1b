/* Print IMU samples from a topic as they are published: the C twin of the
 * Rust imu-subscriber. The expected schema (IMU_SCHEMA) makes a topic of
 * another type an error at open, exactly as in Rust.
 *
 *   shmbus-c-subscriber [--name imu] [--key KEY] [--count 10] [--timeout SECS]
 *                       [--wait SECS] [--mode next|latest]
 *
 * Exits 0 after --count frames; 1 on an error (timeout, wrong type), with
 * the library's message. A publisher that stops, or a topic that is removed
 * and created again, is said on its own line and waited for up to --wait
 * seconds (attaching the new segment), as in Rust.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imu_types.h"
#include "shmbus.h"

static int fail(const char *what) {
    fprintf(stderr, "shmbus-c-subscriber: %s: %s\n", what, shmbus_last_error());
    return 1;
}

int main(int argc, char **argv) {
    shmbus_topic topic = {0};
    unsigned long long count = 10;
    double timeout = 5, wait = 10;
    int latest = 0;
    topic.name = "imu";
    setvbuf(stdout, NULL, _IOLBF, 0); /* a line as soon as it is printed, also into a pipe (as in Rust) */
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--name") == 0) topic.name = v;
        else if (strcmp(a, "--key") == 0) topic.key = (uint32_t)strtoul(v, NULL, 0);
        else if (strcmp(a, "--count") == 0) count = strtoull(v, NULL, 0);
        else if (strcmp(a, "--timeout") == 0) timeout = atof(v);
        else if (strcmp(a, "--wait") == 0) wait = atof(v);
        else if (strcmp(a, "--mode") == 0) latest = strcmp(v, "latest") == 0;
        else {
            fprintf(stderr, "shmbus-c-subscriber: unknown option %s\n", a);
            return 2;
        }
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: shmbus-c-subscriber [--name imu] [--key KEY] [--count N] [--timeout SECS] "
                        "[--wait SECS] [--mode next|latest]\n");
        return 2;
    }

    shmbus_schema schema;
    shmbus_subscriber sub;
    shmbus_frame f;
    shmbus_topic_info info;
    shmbus_status st;
    if (shmbus_schema_parse(IMU_SCHEMA, &schema) != SHMBUS_OK) return fail("schema");
    if (shmbus_subscriber_open(&topic, schema, (uint32_t)(wait * 1000), &sub) != SHMBUS_OK) return fail("open");
    if (shmbus_frame_new(schema, &f) != SHMBUS_OK) return fail("frame");
    shmbus_subscriber_info(sub, &info);
    shmbus_subscriber_status(sub, &st);
    printf("subscribed to '%s' at key 0x%08x: %u slots, frame capacity %u bytes, %s\n", info.name, info.key,
           info.slots, info.frame_capacity,
           st.publisher == SHMBUS_PUBLISHER_ALIVE ? "publisher alive" : "publisher not running");

    unsigned long long received = 0, missed = 0, skipped = 0, errors_in_a_row = 0;
    uint32_t ms = (uint32_t)(timeout * 1000);
    while (received < count) {
        shmbus_sample s;
        int32_t rc = latest ? shmbus_subscriber_wait_latest(sub, f, ms, &s) : shmbus_subscriber_wait_next(sub, f, ms, &s);
        if (rc == SHMBUS_MISSED) {
            missed += s.missed;
            printf("missed %llu frames (fell behind the ring)\n", (unsigned long long)s.missed);
            continue;
        }
        if (rc == SHMBUS_ERR_PUBLISHER_GONE) {
            /* The same segment carries its frames once it (or a restart) runs again. */
            printf("the publisher is not running; waiting up to %.1f s for it to come back\n", wait);
            /* Back when it runs again, or when a frame comes anyway (a publisher whose lock alone was
             * removed still publishes); removed: the next wait says so. */
            rc = shmbus_subscriber_wait_publisher(sub, (uint32_t)(wait * 1000), NULL);
            if (rc == SHMBUS_ERR_TIMEOUT) {
                fprintf(stderr, "shmbus-c-subscriber: after %llu frames: the publisher did not come back within %.1f s\n",
                        received, wait);
                return 1;
            }
            if (rc != SHMBUS_OK && rc != SHMBUS_ERR_REMOVED) {
                fprintf(stderr, "shmbus-c-subscriber: after %llu frames: %s\n", received, shmbus_last_error());
                return 1;
            }
            continue;
        }
        if (rc == SHMBUS_ERR_REMOVED) {
            /* This handle never sees a new frame: attach the topic again once it is created again. */
            printf("the topic was removed; waiting up to %.1f s for it to be created again\n", wait);
            shmbus_subscriber_close(sub);
            if (shmbus_subscriber_open(&topic, schema, (uint32_t)(wait * 1000), &sub) != SHMBUS_OK)
                return fail("open again");
            printf("attached the topic again\n");
            continue;
        }
        if (rc == SHMBUS_ERR_READ && ++errors_in_a_row < 100) {
            /* One frame that cannot be read (its publisher died or stopped while overwriting it, or it
             * does not decode as Imu): it is lost, and the read moved past it. Say so and read on. */
            skipped++;
            printf("skipped: %s\n", shmbus_last_error());
            continue;
        }
        if (rc != SHMBUS_OK) {
            fprintf(stderr, "shmbus-c-subscriber: after %llu frames: %s\n", received, shmbus_last_error());
            return 1;
        }
        errors_in_a_row = 0;
        received++;
        uint64_t seq = 0, t_us = 0;
        double acc[3], gyro[3], temp = 0;
        char id[17];
        size_t n;
        shmbus_frame_get_u64(f, "seq", &seq);
        shmbus_frame_get_u64(f, "t_us", &t_us);
        shmbus_frame_get_str(f, "frame_id", id, sizeof id, &n);
        shmbus_frame_get_f64(f, "acc[0]", &acc[0]);
        shmbus_frame_get_f64(f, "acc[1]", &acc[1]);
        shmbus_frame_get_f64(f, "acc[2]", &acc[2]);
        shmbus_frame_get_f64(f, "gyro[0]", &gyro[0]);
        shmbus_frame_get_f64(f, "gyro[1]", &gyro[1]);
        shmbus_frame_get_f64(f, "gyro[2]", &gyro[2]);
        shmbus_frame_get_f64(f, "temp_c", &temp);
        shmbus_subscriber_status(sub, &st);
        printf("frame gen=%llu seq=%llu t_us=%llu frame_id=%s acc=[%.3f %.3f %.3f] gyro=[%.4f %.4f %.4f] "
               "temp_c=%.2f lag_us=%.0f stale_us=%.0f behind=%llu\n",
               (unsigned long long)s.generation, (unsigned long long)seq, (unsigned long long)t_us, id, acc[0],
               acc[1], acc[2], gyro[0], gyro[1], gyro[2], temp, (double)s.age_ns / 1e3, (double)st.age_ns / 1e3,
               (unsigned long long)(st.generation - s.generation));
    }
    if (skipped)
        printf("received %llu frames, missed %llu, skipped %llu\n", received, missed, skipped);
    else
        printf("received %llu frames, missed %llu\n", received, missed);
    shmbus_frame_close(f);
    shmbus_schema_close(schema);
    shmbus_subscriber_close(sub);
    return 0;
}
