/* read-topic NAME BUS N: print N frames of a topic as JSON lines, read in publish
 * order with libshmbus, then the library's version. Built by ci/deb-test.sh against
 * the libshmbus-dev package of each architecture. Exits 1 with the library's message
 * on any error. */
#include <stdio.h>
#include <stdlib.h>

#include "shmbus.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: read-topic NAME BUS N\n");
        return 2;
    }
    shmbus_topic topic = {0};
    topic.name = argv[1];
    topic.bus = argv[2];
    shmbus_schema any = {0}; /* take the topic's own schema */
    shmbus_subscriber sub;
    if (shmbus_subscriber_open(&topic, any, 30000, &sub) != SHMBUS_OK) {
        fprintf(stderr, "read-topic: open %s: %s\n", argv[1], shmbus_last_error());
        return 1;
    }
    char buf[8192];
    size_t len;
    for (long i = 0; i < atol(argv[3]); i++) {
        if (shmbus_subscriber_read_json(sub, SHMBUS_READ_WAIT_NEXT, 30000, buf, sizeof buf, &len, NULL) != SHMBUS_OK) {
            fprintf(stderr, "read-topic: read %s: %s\n", argv[1], shmbus_last_error());
            return 1;
        }
        printf("%s\n", buf);
    }
    shmbus_subscriber_close(sub);
    printf("libshmbus %s\n", shmbus_version());
    return 0;
}
