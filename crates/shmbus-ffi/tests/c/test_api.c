/* Tests of the C API against a live Rust publisher (the imu-publisher
 * example of shmbus-examples, at 1 kHz): typed reads of a Rust type, the
 * in-order and latest reads, and every kind of bad input, each refused
 * with its code.
 *
 * Then topics opened by their name in a config file (written to a
 * temporary file): the Rust publisher's topic and a C publisher's.
 *
 * usage: test_api RUST_KEY FREE_KEY
 *   RUST_KEY  key of the topic "imu" that imu-publisher publishes
 *   FREE_KEY  a key with no segment ("not found"; then the C publisher's
 *             topic, removed at the end)
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The next frame in order, counting frames missed on the way (a reader
 * under qemu-arm can fall a lap behind again while it catches up). */
static int32_t next_counting(shmbus_subscriber sub, shmbus_frame f, shmbus_sample *smp, uint64_t *missed) {
    for (int n = 0; n < 1000; n++) {
        int32_t rc = shmbus_subscriber_wait_next(sub, f, 10000, smp);
        if (rc != SHMBUS_MISSED) return rc;
        *missed += smp->missed;
    }
    return SHMBUS_MISSED;
}

static void test_no_topic(uint32_t free_key) {
    uint32_t key = 0;
    shmbus_subscriber sub = {0};
    shmbus_topic t = {0};

    CHECK("version is a string", shmbus_version() && strlen(shmbus_version()) > 0);
    CHECK("strerror names a code", strstr(shmbus_strerror(SHMBUS_ERR_BUFFER_TOO_SMALL), "too small") != NULL);
    CHECK("strerror of an unknown code", strcmp(shmbus_strerror(12345), "unknown status code") == 0);
    CHECK("last_error is never NULL", shmbus_last_error() != NULL);

    EXPECT_RC("key of imu", shmbus_key(NULL, "imu", &key), SHMBUS_OK);
    CHECK("derived keys have 0x53 on top", (key >> 24) == 0x53);
    EXPECT_RC("key: NULL name", shmbus_key(NULL, NULL, &key), SHMBUS_ERR_NULL);
    EXPECT_RC("key: NULL out", shmbus_key(NULL, "imu", NULL), SHMBUS_ERR_NULL);
    EXPECT_RC("key: bad name", shmbus_key(NULL, "bad name", &key), SHMBUS_ERR_INVALID);
    expect_msg("key: bad name says why", "contains ' '");
    EXPECT_RC("key: empty bus", shmbus_key("", "imu", &key), SHMBUS_ERR_INVALID);
    expect_msg("key: empty bus says why", "invalid bus");
    t.name = "imu";
    t.bus = "lab bench";
    EXPECT_RC("open: invalid bus", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_INVALID);
    t.name = NULL;
    t.bus = NULL;

    EXPECT_RC("open: NULL topic", shmbus_subscriber_open(NULL, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_NULL);
    EXPECT_RC("open: NULL name", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_NULL);
    expect_msg("open: NULL name is named", "topic->name is NULL");
    t.name = "imu";
    t.key = free_key;
    EXPECT_RC("open: NULL out", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, NULL), SHMBUS_ERR_NULL);
    t.name = "\xff\xfe";
    EXPECT_RC("open: name not UTF-8", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_INVALID);
    t.name = "no spaces allowed";
    EXPECT_RC("open: invalid name", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_INVALID);
    t.name = "imu";
    t.slots = 3;
    EXPECT_RC("open: slots not a power of two", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub),
              SHMBUS_ERR_INVALID);
    expect_msg("open: slots message", "power of two");
    t.slots = 0;
    t.lock = 7;
    EXPECT_RC("open: unknown lock policy", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_INVALID);
    t.lock = 0;
    t.flags = 0x100;
    EXPECT_RC("open: unknown flags", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_INVALID);
    t.flags = 0;
    EXPECT_RC("open: no topic at the key", shmbus_subscriber_open(&t, (shmbus_schema){0}, 0, &sub), SHMBUS_ERR_NOT_FOUND);
    expect_msg("open: not found says what to do", "start its publisher");
    EXPECT_RC("open: waits, then not found", shmbus_subscriber_open(&t, (shmbus_schema){0}, 50, &sub),
              SHMBUS_ERR_NOT_FOUND);

    EXPECT_RC("zero subscriber handle", shmbus_subscriber_close((shmbus_subscriber){0}), SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("forged subscriber handle", shmbus_subscriber_close((shmbus_subscriber){0x0004123400000007ull}),
              SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("zero frame handle", shmbus_frame_close((shmbus_frame){0}), SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("garbage schema handle", shmbus_schema_close((shmbus_schema){12345}), SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("zero publisher handle", shmbus_publisher_close((shmbus_publisher){0}), SHMBUS_ERR_BAD_HANDLE);

    shmbus_schema s = {0};
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    EXPECT_RC("schema: NULL bytes", shmbus_schema_from_bytes(NULL, 4, &s), SHMBUS_ERR_NULL);
    EXPECT_RC("schema: garbage bytes", shmbus_schema_from_bytes(garbage, sizeof garbage, &s), SHMBUS_ERR_SCHEMA);

    /* A refused set changes nothing: v[3] would make four elements live. */
    shmbus_frame lf = {0};
    size_t n = 99;
    EXPECT_RC("list schema", shmbus_schema_parse("struct L { v: heapless::Vec<u16, 4> }", &s), SHMBUS_OK);
    EXPECT_RC("list frame", shmbus_frame_new(s, &lf), SHMBUS_OK);
    EXPECT_RC("set beyond u16, past the list's end", shmbus_frame_set_u64(lf, "v[3]", 70000), SHMBUS_ERR_RANGE);
    EXPECT_RC("list length", shmbus_frame_get_len(lf, "v", &n), SHMBUS_OK);
    CHECK("a refused set leaves the list as it was", n == 0);
    EXPECT_RC("list frame close", shmbus_frame_close(lf), SHMBUS_OK);
    EXPECT_RC("list schema close", shmbus_schema_close(s), SHMBUS_OK);
}

/* The Rust examples' Imu, declared in the codec's language. */
#define IMU_DECL                                                                                                  \
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, acc: [f32; 3], gyro: [f32; 3], "       \
    "temp_c: f32 }"

/* A u32 schema in postcard-schema's wire form: name "u32", type tag 8. */
static const uint8_t U32_SCHEMA[] = {3, 'u', '3', '2', 8};

static void test_rust_publisher(uint32_t rust_key) {
    shmbus_topic t = {0};
    shmbus_subscriber sub = {0};
    shmbus_schema s = {0}, u32s = {0};
    shmbus_frame f = {0}, uf = {0};
    shmbus_sample smp;
    shmbus_status st;
    shmbus_topic_info info;
    char str[64];
    size_t len = 0;
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    int32_t rc;

    t.name = "imu";
    t.key = rust_key;
    EXPECT_RC("u32 schema from bytes", shmbus_schema_from_bytes(U32_SCHEMA, sizeof U32_SCHEMA, &u32s), SHMBUS_OK);
    EXPECT_RC("open: waits for the Rust publisher's topic", shmbus_subscriber_open(&t, (shmbus_schema){0}, 20000, &sub),
              SHMBUS_OK);
    EXPECT_RC("open with the wrong expected type", shmbus_subscriber_open(&t, u32s, 0, &(shmbus_subscriber){0}),
              SHMBUS_ERR_SCHEMA_MISMATCH);
    {
        shmbus_schema decl = {0};
        shmbus_subscriber typed = {0};
        EXPECT_RC("parse the Imu declaration", shmbus_schema_parse(IMU_DECL, &decl), SHMBUS_OK);
        EXPECT_RC("the declared Imu is the Rust Imu (fingerprint)", shmbus_subscriber_open(&t, decl, 0, &typed),
                  SHMBUS_OK);
        EXPECT_RC("close it", shmbus_subscriber_close(typed), SHMBUS_OK);
        EXPECT_RC("close the declaration", shmbus_schema_close(decl), SHMBUS_OK);
    }
    expect_msg("schema mismatch message", "carries frames of another type");

    EXPECT_RC("info", shmbus_subscriber_info(sub, &info), SHMBUS_OK);
    CHECK("info: name", strcmp(info.name, "imu") == 0);
    CHECK("info: key", info.key == rust_key);
    CHECK("info: 16 slots", info.slots == 16);
    CHECK("info: frame capacity of the Rust Imu (60)", info.frame_capacity == 60);
    EXPECT_RC("info: NULL out", shmbus_subscriber_info(sub, NULL), SHMBUS_ERR_NULL);

    EXPECT_RC("topic schema", shmbus_subscriber_schema(sub, &s), SHMBUS_OK);
    uint64_t fp = 0;
    EXPECT_RC("fingerprint", shmbus_schema_fingerprint(s, &fp), SHMBUS_OK);
    CHECK("fingerprint equals the segment's", fp == info.fingerprint);
    EXPECT_RC("schema name", shmbus_schema_name(s, str, sizeof str, &len), SHMBUS_OK);
    CHECK("schema name is Imu", strcmp(str, "Imu") == 0 && len == 3);
    EXPECT_RC("schema name: small buffer", shmbus_schema_name(s, str, 3, &len), SHMBUS_ERR_BUFFER_TOO_SMALL);
    CHECK("schema name: needed length", len == 3);
    EXPECT_RC("frame for the topic", shmbus_frame_new(s, &f), SHMBUS_OK);
    EXPECT_RC("frame: NULL out", shmbus_frame_new(s, NULL), SHMBUS_ERR_NULL);
    EXPECT_RC("close the schema", shmbus_schema_close(s), SHMBUS_OK);
    EXPECT_RC("close the schema twice", shmbus_schema_close(s), SHMBUS_ERR_CLOSED);
    EXPECT_RC("closed schema cannot make frames", shmbus_frame_new(s, &uf), SHMBUS_ERR_CLOSED);
    EXPECT_RC("u32 frame", shmbus_frame_new(u32s, &uf), SHMBUS_OK);

    rc = shmbus_subscriber_wait_latest(sub, f, 10000, &smp);
    EXPECT_RC("wait_latest into the frame", rc, SHMBUS_OK);
    CHECK("sample: generation", smp.generation > 0);
    CHECK("sample: length within capacity", smp.len > 0 && smp.len <= 60);
    CHECK("sample: timestamps", smp.mono_ns > 0 && smp.real_ns > 0);
    EXPECT_RC("get seq", shmbus_frame_get_u64(f, "seq", &u), SHMBUS_OK);
    EXPECT_RC("get seq as signed", shmbus_frame_get_i64(f, "seq", &i), SHMBUS_OK);
    CHECK("seq signed == unsigned", (uint64_t)i == u);
    EXPECT_RC("get frame_id", shmbus_frame_get_str(f, "frame_id", str, sizeof str, &len), SHMBUS_OK);
    CHECK("frame_id is imu_link", strcmp(str, "imu_link") == 0 && len == 8);
    EXPECT_RC("get acc[2]", shmbus_frame_get_f64(f, "acc[2]", &d), SHMBUS_OK);
    CHECK("acc[2] is 9.81 (as f32)", fabs(d - 9.81) < 1e-5);
    EXPECT_RC("get temp_c", shmbus_frame_get_f64(f, "temp_c", &d), SHMBUS_OK);
    CHECK("temp_c in 35..36", d >= 35.0 && d < 36.0);
    EXPECT_RC("frame_id: small buffer", shmbus_frame_get_str(f, "frame_id", str, 4, &len),
              SHMBUS_ERR_BUFFER_TOO_SMALL);
    CHECK("frame_id: needed length", len == 8);
    EXPECT_RC("frame_id: sizing call", shmbus_frame_get_str(f, "frame_id", NULL, 0, &len), SHMBUS_ERR_BUFFER_TOO_SMALL);
    EXPECT_RC("frame_id: NULL buffer with a size", shmbus_frame_get_str(f, "frame_id", NULL, 8, &len),
              SHMBUS_ERR_NULL);
    EXPECT_RC("string length", shmbus_frame_get_len(f, "frame_id", &len), SHMBUS_OK);
    CHECK("string length is 8", len == 8);
    EXPECT_RC("get_u64 of a string", shmbus_frame_get_u64(f, "frame_id", &u), SHMBUS_ERR_WRONG_TYPE);
    expect_msg("wrong type names the field", "field 'frame_id' is string");
    EXPECT_RC("get_f64 of an integer", shmbus_frame_get_f64(f, "seq", &d), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("get_bool of a float", shmbus_frame_get_bool(f, "temp_c", &rc), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("no such field", shmbus_frame_get_u64(f, "nosuch", &u), SHMBUS_ERR_NO_FIELD);
    expect_msg("no such field is named", "no field 'nosuch'");
    EXPECT_RC("index past the array", shmbus_frame_get_f64(f, "acc[3]", &d), SHMBUS_ERR_NO_FIELD);
    EXPECT_RC("NULL path", shmbus_frame_get_u64(f, NULL, &u), SHMBUS_ERR_NULL);
    EXPECT_RC("NULL out", shmbus_frame_get_u64(f, "seq", NULL), SHMBUS_ERR_NULL);
    EXPECT_RC("set u32 beyond its range", shmbus_frame_set_u64(f, "seq", 1ull << 32), SHMBUS_ERR_RANGE);
    expect_msg("range message", "does not fit field 'seq'");
    EXPECT_RC("set u32 negative", shmbus_frame_set_i64(f, "seq", -1), SHMBUS_ERR_RANGE);
    EXPECT_RC("set u64 into u64", shmbus_frame_set_u64(f, "t_us", UINT64_MAX), SHMBUS_OK);
    EXPECT_RC("get u64 max as signed", shmbus_frame_get_i64(f, "t_us", &i), SHMBUS_ERR_RANGE);
    EXPECT_RC("set f32 beyond its range", shmbus_frame_set_f64(f, "acc[0]", 1e39), SHMBUS_ERR_RANGE);
    EXPECT_RC("set f32 to infinity", shmbus_frame_set_f64(f, "acc[0]", INFINITY), SHMBUS_OK);
    EXPECT_RC("set string not UTF-8", shmbus_frame_set_str(f, "frame_id", "\xc3\x28"), SHMBUS_ERR_INVALID);
    EXPECT_RC("set bool into an integer", shmbus_frame_set_bool(f, "seq", 1), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("set string into a float", shmbus_frame_set_str(f, "temp_c", "x"), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("set_len of a non-list", shmbus_frame_set_len(f, "seq", 1), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("clear", shmbus_frame_clear(f), SHMBUS_OK);
    EXPECT_RC("after clear", shmbus_frame_get_str(f, "frame_id", str, sizeof str, &len), SHMBUS_OK);
    CHECK("cleared string is empty", len == 0 && str[0] == 0);

    EXPECT_RC("read into a frame of another schema", shmbus_subscriber_latest(sub, uf, &smp), SHMBUS_ERR_WRONG_TYPE);
    expect_msg("other schema message", "make the frame from shmbus_subscriber_schema()");
    EXPECT_RC("frame handle as a subscriber", shmbus_subscriber_latest((shmbus_subscriber){f.id}, f, &smp),
              SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("subscriber handle as a frame", shmbus_subscriber_latest(sub, (shmbus_frame){sub.id}, &smp),
              SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("latest without a frame (metadata only)", shmbus_subscriber_latest(sub, (shmbus_frame){0}, &smp),
              SHMBUS_OK);
    EXPECT_RC("latest with NULL sample", shmbus_subscriber_latest(sub, f, NULL), SHMBUS_OK);

    /* In order: consecutive generations, then a lap behind. */
    shmbus_sample a, b;
    uint64_t missed = 0;
    EXPECT_RC("wait_next", next_counting(sub, f, &a, &missed), SHMBUS_OK);
    missed = 0;
    EXPECT_RC("wait_next again", next_counting(sub, f, &b, &missed), SHMBUS_OK);
    CHECK("in-order: frames read + missed add up", b.generation == a.generation + 1 + missed);
    /* Let the publisher lap the 16-slot ring: wait (bounded) until it is 40 ahead. */
    for (int n = 0; n < 2000; n++) {
        shmbus_subscriber_status(sub, &st);
        if (st.generation >= b.generation + 40) break;
        sleep_ms(5);
    }
    CHECK("publisher went 40 frames ahead", st.generation >= b.generation + 40);
    rc = shmbus_subscriber_next(sub, f, &smp);
    EXPECT_RC("a lap behind: missed", rc, SHMBUS_MISSED);
    CHECK("missed count is at least the lap", smp.missed >= 40 - 16);
    missed = smp.missed;
    rc = next_counting(sub, f, &a, &missed);
    EXPECT_RC("after missed: the oldest frame", rc, SHMBUS_OK);
    CHECK("oldest frame follows the missed ones", a.generation == b.generation + 1 + missed);

    /* Bytes: a small buffer keeps the in-order frame for the next call. */
    uint8_t bytes[64];
    EXPECT_RC("seek oldest", shmbus_subscriber_seek_oldest(sub), SHMBUS_OK);
    do {
        rc = shmbus_subscriber_read_bytes(sub, SHMBUS_READ_WAIT_NEXT, 10000, bytes, 1, &a);
    } while (rc == SHMBUS_MISSED);
    EXPECT_RC("next bytes into 1 byte", rc, SHMBUS_ERR_BUFFER_TOO_SMALL);
    CHECK("needed length reported", a.len > 1 && a.len <= 60);
    rc = shmbus_subscriber_read_bytes(sub, SHMBUS_READ_NEXT, 0, bytes, sizeof bytes, &b);
    EXPECT_RC("next bytes, enough room", rc, SHMBUS_OK);
    CHECK("the frame that did not fit is the one delivered next", b.generation == a.generation && b.len == a.len);
    EXPECT_RC("latest bytes with no room", shmbus_subscriber_read_bytes(sub, SHMBUS_READ_LATEST, 0, NULL, 0, &a),
              SHMBUS_ERR_BUFFER_TOO_SMALL);
    EXPECT_RC("latest bytes", shmbus_subscriber_read_bytes(sub, SHMBUS_READ_LATEST, 0, bytes, sizeof bytes, &a),
              SHMBUS_OK);
    EXPECT_RC("wait_latest bytes", shmbus_subscriber_read_bytes(sub, SHMBUS_READ_WAIT_LATEST, 10000, bytes, 64, &b),
              SHMBUS_OK);
    CHECK("wait_latest is newer", b.generation > a.generation);
    EXPECT_RC("unknown read kind", shmbus_subscriber_read_bytes(sub, 9, 0, bytes, sizeof bytes, &a), SHMBUS_ERR_INVALID);
    EXPECT_RC("NULL buffer with a size", shmbus_subscriber_read_bytes(sub, SHMBUS_READ_LATEST, 0, NULL, 8, &a),
              SHMBUS_ERR_NULL);

    EXPECT_RC("status", shmbus_subscriber_status(sub, &st), SHMBUS_OK);
    CHECK("publisher alive", st.publisher == SHMBUS_PUBLISHER_ALIVE && st.publisher_pid > 0);
    CHECK("not removed", st.removed == 0);
    CHECK("age known", st.age_ns != UINT64_MAX);
    rc = shmbus_subscriber_has_new(sub);
    CHECK("has_new is 0 or 1", rc == 0 || rc == 1);

    EXPECT_RC("close", shmbus_subscriber_close(sub), SHMBUS_OK);
    EXPECT_RC("double close", shmbus_subscriber_close(sub), SHMBUS_ERR_CLOSED);
    expect_msg("closed message", "is closed");
    EXPECT_RC("read from a closed subscriber", shmbus_subscriber_latest(sub, f, &smp), SHMBUS_ERR_CLOSED);
    EXPECT_RC("status of a closed subscriber", shmbus_subscriber_status(sub, &st), SHMBUS_ERR_CLOSED);
    EXPECT_RC("close frame", shmbus_frame_close(f), SHMBUS_OK);
    EXPECT_RC("double close frame", shmbus_frame_close(f), SHMBUS_ERR_CLOSED);
    EXPECT_RC("set on a closed frame", shmbus_frame_set_u64(f, "seq", 1), SHMBUS_ERR_CLOSED);
    EXPECT_RC("close u32 frame", shmbus_frame_close(uf), SHMBUS_OK);
    EXPECT_RC("close u32 schema", shmbus_schema_close(u32s), SHMBUS_OK);
}

/* The C publisher side: a typed frame published from C and read back by a
 * C subscriber; JSON in and out; every bad input refused. */
static void test_c_publisher(uint32_t key) {
    shmbus_topic t = {0};
    shmbus_schema s = {0}, other = {0};
    shmbus_publisher pub = {0}, pub2 = {0};
    shmbus_subscriber sub = {0};
    shmbus_frame f = {0}, g = {0}, of = {0};
    shmbus_sample smp;
    shmbus_topic_info info;
    char text[512];
    size_t len = 0, max = 0;
    uint64_t gen = 0, u = 0;
    double d = 0;

    EXPECT_RC("parse: NULL", shmbus_schema_parse(NULL, &s), SHMBUS_ERR_NULL);
    EXPECT_RC("parse: syntax error", shmbus_schema_parse("struct Imu { seq u32 }", &s), SHMBUS_ERR_SCHEMA);
    expect_msg("parse error has line:col", "1:");
    EXPECT_RC("parse the Imu", shmbus_schema_parse(IMU_DECL, &s), SHMBUS_OK);
    EXPECT_RC("max size", shmbus_schema_max_size(s, &max), SHMBUS_OK);
    CHECK("max size is the Rust Imu's 60", max == 60);
    EXPECT_RC("schema text", shmbus_schema_text(s, text, sizeof text, &len), SHMBUS_OK);
    CHECK("schema text names the fields", strstr(text, "frame_id") && strstr(text, "heapless::String<16>"));
    EXPECT_RC("schema text: small buffer", shmbus_schema_text(s, text, 8, &len), SHMBUS_ERR_BUFFER_TOO_SMALL);
    CHECK("schema text: needed length", len > 8);
    EXPECT_RC("parse a string without capacity", shmbus_schema_parse("struct L { s: String }", &other), SHMBUS_OK);
    EXPECT_RC("no maximum size", shmbus_schema_max_size(other, &max), SHMBUS_ERR_SCHEMA);
    t.name = "cimu";
    t.key = key;
    EXPECT_RC("cannot publish an unbounded schema", shmbus_publisher_open(&t, other, &pub), SHMBUS_ERR_SCHEMA);
    expect_msg("unbounded: says how to fix", "heapless::String<N>");
    EXPECT_RC("open: NULL out", shmbus_publisher_open(&t, s, NULL), SHMBUS_ERR_NULL);
    EXPECT_RC("open: zero schema", shmbus_publisher_open(&t, (shmbus_schema){0}, &pub), SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("open the C publisher", shmbus_publisher_open(&t, s, &pub), SHMBUS_OK);
    EXPECT_RC("second publisher", shmbus_publisher_open(&t, s, &pub2), SHMBUS_ERR_PUBLISHER_ACTIVE);
    expect_msg("second publisher: names the live one", "already has a live publisher");
    EXPECT_RC("publisher info", shmbus_publisher_info(pub, &info), SHMBUS_OK);
    CHECK("publisher info: created, capacity 60", info.created == 1 && info.frame_capacity == 60 && info.slots == 16);

    EXPECT_RC("subscribe with the expected schema", shmbus_subscriber_open(&t, s, 1000, &sub), SHMBUS_OK);
    EXPECT_RC("nothing yet", shmbus_subscriber_latest(sub, (shmbus_frame){0}, &smp), SHMBUS_NO_FRAME);
    EXPECT_RC("nothing new", shmbus_subscriber_next(sub, (shmbus_frame){0}, &smp), SHMBUS_NO_FRAME);
    EXPECT_RC("wait times out", shmbus_subscriber_wait_next(sub, (shmbus_frame){0}, 20, &smp), SHMBUS_ERR_TIMEOUT);
    EXPECT_RC("frame", shmbus_frame_new(s, &f), SHMBUS_OK);
    EXPECT_RC("frame to read into", shmbus_frame_new(s, &g), SHMBUS_OK);
    EXPECT_RC("frame of another schema", shmbus_frame_new(other, &of), SHMBUS_OK);
    EXPECT_RC("set seq", shmbus_frame_set_u64(f, "seq", 41), SHMBUS_OK);
    EXPECT_RC("set t_us", shmbus_frame_set_u64(f, "t_us", 123456789), SHMBUS_OK);
    EXPECT_RC("set frame_id", shmbus_frame_set_str(f, "frame_id", "imu_c"), SHMBUS_OK);
    EXPECT_RC("frame_id over capacity", shmbus_frame_set_str(f, "frame_id", "seventeen-bytes!!"), SHMBUS_ERR_RANGE);
    expect_msg("capacity message", "exceed field 'frame_id'");
    EXPECT_RC("set acc[2]", shmbus_frame_set_f64(f, "acc[2]", 9.81), SHMBUS_OK);
    EXPECT_RC("publish", shmbus_publish(pub, f, &gen), SHMBUS_OK);
    CHECK("first generation is 1", gen == 1);
    EXPECT_RC("publish a frame of another schema", shmbus_publish(pub, of, &gen), SHMBUS_ERR_WRONG_TYPE);
    EXPECT_RC("publish with a subscriber handle", shmbus_publish((shmbus_publisher){sub.id}, f, &gen),
              SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("publish with the publisher as frame", shmbus_publish(pub, (shmbus_frame){pub.id}, &gen),
              SHMBUS_ERR_BAD_HANDLE);
    EXPECT_RC("C reads the C frame", shmbus_subscriber_wait_next(sub, g, 1000, &smp), SHMBUS_OK);
    CHECK("generation 1", smp.generation == 1);
    EXPECT_RC("seq", shmbus_frame_get_u64(g, "seq", &u), SHMBUS_OK);
    CHECK("seq is 41", u == 41);
    EXPECT_RC("acc[2]", shmbus_frame_get_f64(g, "acc[2]", &d), SHMBUS_OK);
    CHECK("acc[2] is 9.81 as f32", fabs(d - 9.81) < 1e-5);
    EXPECT_RC("frame_id", shmbus_frame_get_str(g, "frame_id", text, sizeof text, &len), SHMBUS_OK);
    CHECK("frame_id is imu_c", strcmp(text, "imu_c") == 0);

    /* JSON in and out. */
    EXPECT_RC("publish JSON",
              shmbus_publish_json(pub, "{\"seq\":42,\"t_us\":7,\"frame_id\":\"j\",\"acc\":[0,0,1.5],"
                                       "\"gyro\":[0,0,0],\"temp_c\":20.25}", &gen),
              SHMBUS_OK);
    CHECK("JSON generation 2", gen == 2);
    EXPECT_RC("read JSON", shmbus_subscriber_read_json(sub, SHMBUS_READ_NEXT, 0, text, sizeof text, &len, &smp),
              SHMBUS_OK);
    CHECK("JSON text", strcmp(text, "{\"seq\":42,\"t_us\":7,\"frame_id\":\"j\",\"acc\":[0.0,0.0,1.5],"
                                    "\"gyro\":[0.0,0.0,0.0],\"temp_c\":20.25}") == 0);
    CHECK("JSON length", len == strlen(text));
    EXPECT_RC("JSON: field over capacity",
              shmbus_publish_json(pub, "{\"seq\":1,\"t_us\":7,\"frame_id\":\"this is far too long\",\"acc\":[0,0,0],"
                                       "\"gyro\":[0,0,0],\"temp_c\":0}", &gen),
              SHMBUS_ERR_JSON);
    expect_msg("JSON error names the path", ".frame_id");
    EXPECT_RC("JSON: not JSON", shmbus_publish_json(pub, "{nope", &gen), SHMBUS_ERR_JSON);
    EXPECT_RC("JSON: a key twice",
              shmbus_publish_json(pub, "{\"seq\":1,\"t_us\":7,\"frame_id\":\"\",\"acc\":[0,0,0],"
                                       "\"gyro\":[0,0,0],\"temp_c\":0,\"seq\":2}", &gen),
              SHMBUS_ERR_JSON);
    expect_msg("JSON error names the repeated key", "key \"seq\" appears twice");
    EXPECT_RC("JSON: u32 out of range",
              shmbus_publish_json(pub, "{\"seq\":-1,\"t_us\":7,\"frame_id\":\"\",\"acc\":[0,0,0],"
                                       "\"gyro\":[0,0,0],\"temp_c\":0}", &gen),
              SHMBUS_ERR_JSON);
    EXPECT_RC("publish frame 3", shmbus_publish(pub, f, &gen), SHMBUS_OK);
    EXPECT_RC("JSON into a small buffer", shmbus_subscriber_read_json(sub, SHMBUS_READ_NEXT, 0, text, 10, &len, &smp),
              SHMBUS_ERR_BUFFER_TOO_SMALL);
    CHECK("JSON: needed length", len > 10);
    EXPECT_RC("JSON: the kept frame", shmbus_subscriber_read_json(sub, SHMBUS_READ_NEXT, 0, text, sizeof text, &len, &smp),
              SHMBUS_OK);
    CHECK("JSON: generation 3 (not lost)", smp.generation == 3 && strstr(text, "\"seq\":41"));
    EXPECT_RC("JSON: NULL len", shmbus_subscriber_read_json(sub, SHMBUS_READ_LATEST, 0, text, sizeof text, NULL, &smp),
              SHMBUS_ERR_NULL);

    /* Raw bytes: too large for the topic. */
    static uint8_t big[61];
    EXPECT_RC("bytes over the frame capacity", shmbus_publish_bytes(pub, big, sizeof big, &gen), SHMBUS_ERR_TOO_LARGE);
    EXPECT_RC("bytes: NULL with a length", shmbus_publish_bytes(pub, NULL, 4, &gen), SHMBUS_ERR_NULL);

    /* Publisher gone, then removed. */
    EXPECT_RC("close the publisher", shmbus_publisher_close(pub), SHMBUS_OK);
    EXPECT_RC("close it twice", shmbus_publisher_close(pub), SHMBUS_ERR_CLOSED);
    EXPECT_RC("publish on a closed publisher", shmbus_publish(pub, f, &gen), SHMBUS_ERR_CLOSED);
    EXPECT_RC("wait: publisher gone", shmbus_subscriber_wait_next(sub, g, 5000, &smp), SHMBUS_ERR_PUBLISHER_GONE);
    int32_t state = -1;
    EXPECT_RC("wait for the publisher: not back", shmbus_subscriber_wait_publisher(sub, 300, &state),
              SHMBUS_ERR_TIMEOUT);
    CHECK("no state on a timeout", state == -1);
    EXPECT_RC("its frames stay readable", shmbus_subscriber_latest(sub, g, &smp), SHMBUS_OK);
    CHECK("latest is frame 3", smp.generation == 3);
    EXPECT_RC("reopen the topic", shmbus_publisher_open(&t, s, &pub), SHMBUS_OK);
    EXPECT_RC("wait for the publisher: back", shmbus_subscriber_wait_publisher(sub, 5000, &state), SHMBUS_OK);
    CHECK("it holds the lock", state == SHMBUS_PUBLISHER_ALIVE);
    EXPECT_RC("reopened info", shmbus_publisher_info(pub, &info), SHMBUS_OK);
    CHECK("reopened, not created", info.created == 0);
    EXPECT_RC("publish after reopen", shmbus_publish(pub, f, &gen), SHMBUS_OK);
    CHECK("generations go on", gen == 4);
    EXPECT_RC("remove the topic", shmbus_publisher_remove(pub), SHMBUS_OK);
    EXPECT_RC("remove twice", shmbus_publisher_remove(pub), SHMBUS_ERR_CLOSED);
    EXPECT_RC("frame 4 is still read after the removal", shmbus_subscriber_next(sub, g, &smp), SHMBUS_OK);
    CHECK("frame 4", smp.generation == 4);
    EXPECT_RC("wait: removed", shmbus_subscriber_wait_next(sub, g, 5000, &smp), SHMBUS_ERR_REMOVED);
    EXPECT_RC("wait for the publisher: removed", shmbus_subscriber_wait_publisher(sub, 5000, NULL),
              SHMBUS_ERR_REMOVED);
    shmbus_status st;
    EXPECT_RC("status after removal", shmbus_subscriber_status(sub, &st), SHMBUS_OK);
    CHECK("status says removed", st.removed == 1);
    shmbus_subscriber_close(sub);
    shmbus_frame_close(f);
    shmbus_frame_close(g);
    shmbus_frame_close(of);
    shmbus_schema_close(s);
    shmbus_schema_close(other);
}

/* Write `text` to a new temporary file (under $TMPDIR, else /tmp); its path
 * goes to `path`. */
static int write_temp(char *path, size_t cap, const char *name, const char *text) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(path, cap, "%s/shmbus-c-%ld-%s", dir, (long)getpid(), name);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(text, f);
    return fclose(f) == 0;
}

/* Topics by their name in the board's config: the key, slots and mode come
 * from the file; a missing file, a broken one and an unknown name are each
 * SHMBUS_ERR_CONFIG with the tools' message. */
static void test_config(uint32_t rust_key, uint32_t free_key) {
    char path[256], bad[256], text[1024];
    shmbus_schema s = {0}, u = {0};
    shmbus_publisher pub = {0};
    shmbus_subscriber sub = {0}, rsub = {0};
    shmbus_topic_info info;
    shmbus_sample smp;
    shmbus_frame f = {0};
    uint64_t gen = 0;
    uint32_t key = 0;

    snprintf(text, sizeof text,
             "bus = \"ctest\"\n\n[[topic]]\nname = \"imu\"\nkey = 0x%08x\n\n"
             "[[topic]]\nname = \"cimu\"\nkey = 0x%08x\nslots = 8\nmode = \"0600\"\nlock = \"off\"\n\n"
             "[[topic]]\nname = \"derived\"\nlock = \"off\"\n",
             (unsigned)rust_key, (unsigned)free_key);
    CHECK("config: write a board config", write_temp(path, sizeof path, "board.toml", text));
    CHECK("config: write a broken config",
          write_temp(bad, sizeof bad, "bad.toml", "[[topic]]\nname = \"imu\"\nslots = 3\n"));
    EXPECT_RC("config: parse the Imu", shmbus_schema_parse(IMU_DECL, &s), SHMBUS_OK);
    EXPECT_RC("config: a u32 schema", shmbus_schema_from_bytes(U32_SCHEMA, sizeof U32_SCHEMA, &u), SHMBUS_OK);

    /* The Rust publisher's topic by its config name. */
    EXPECT_RC("config: subscribe to the Rust imu by name", shmbus_subscriber_open_config(path, NULL, "imu", s, 5000, &rsub),
              SHMBUS_OK);
    EXPECT_RC("config: its info", shmbus_subscriber_info(rsub, &info), SHMBUS_OK);
    CHECK("config: at the config's key", info.key == rust_key);
    EXPECT_RC("config: a frame of the Rust imu", shmbus_subscriber_wait_latest(rsub, (shmbus_frame){0}, 10000, &smp),
              SHMBUS_OK);
    EXPECT_RC("config: another schema than the running publisher's",
              shmbus_subscriber_open_config(path, NULL, "imu", u, 0, &sub), SHMBUS_ERR_SCHEMA_MISMATCH);
    expect_msg("config: the mismatch says so", "carries frames of another type");
    EXPECT_RC("config: a second publisher of the Rust imu", shmbus_publisher_open_config(path, NULL, "imu", s, &pub),
              SHMBUS_ERR_PUBLISHER_ACTIVE);
    shmbus_subscriber_close(rsub);

    /* A C publisher and subscriber by name: the config's key, slots, mode. */
    EXPECT_RC("config: publish cimu by name", shmbus_publisher_open_config(path, NULL, "cimu", s, &pub), SHMBUS_OK);
    EXPECT_RC("config: cimu info", shmbus_publisher_info(pub, &info), SHMBUS_OK);
    CHECK("config: cimu has the config's key, 8 slots, no RAM lock",
          info.key == free_key && info.slots == 8 && info.locked == -1);
    EXPECT_RC("config: subscribe to cimu by name", shmbus_subscriber_open_config(path, NULL, "cimu", s, 1000, &sub),
              SHMBUS_OK);
    EXPECT_RC("config: a frame", shmbus_frame_new(s, &f), SHMBUS_OK);
    EXPECT_RC("config: set seq", shmbus_frame_set_u64(f, "seq", 7), SHMBUS_OK);
    EXPECT_RC("config: publish", shmbus_publish(pub, f, &gen), SHMBUS_OK);
    EXPECT_RC("config: read it", shmbus_subscriber_wait_next(sub, f, 5000, &smp), SHMBUS_OK);
    CHECK("config: generation 1", smp.generation == gen);
    shmbus_subscriber_close(sub);
    EXPECT_RC("config: remove cimu", shmbus_publisher_remove(pub), SHMBUS_OK);

    /* The search order: NULL is $SHMBUS_CONFIG, as for the tools. */
    setenv("SHMBUS_CONFIG", path, 1);
    EXPECT_RC("config: NULL path is $SHMBUS_CONFIG", shmbus_publisher_open_config(NULL, NULL, "cimu", s, &pub), SHMBUS_OK);
    EXPECT_RC("config: and its topic", shmbus_publisher_info(pub, &info), SHMBUS_OK);
    CHECK("config: at the config's key", info.key == free_key);
    EXPECT_RC("config: remove", shmbus_publisher_remove(pub), SHMBUS_OK);
    unsetenv("SHMBUS_CONFIG");

    /* A derived key: the config's bus, or the bus given (as --bus). */
    EXPECT_RC("config: derived key on the config's bus",
              shmbus_publisher_open_config(path, NULL, "derived", s, &pub), SHMBUS_OK);
    shmbus_publisher_info(pub, &info);
    shmbus_key("ctest", "derived", &key);
    CHECK("config: key of bus ctest", info.key == key);
    EXPECT_RC("config: remove derived", shmbus_publisher_remove(pub), SHMBUS_OK);
    EXPECT_RC("config: derived key on another bus",
              shmbus_publisher_open_config(path, "lab", "derived", s, &pub), SHMBUS_OK);
    shmbus_publisher_info(pub, &info);
    shmbus_key("lab", "derived", &key);
    CHECK("config: key of bus lab", info.key == key);
    EXPECT_RC("config: remove derived on lab", shmbus_publisher_remove(pub), SHMBUS_OK);

    /* Every way the config is wrong. */
    EXPECT_RC("config: a missing file", shmbus_subscriber_open_config("/nonexistent/board.toml", NULL, "imu", s, 0, &sub),
              SHMBUS_ERR_CONFIG);
    expect_msg("config: missing says the path", "/nonexistent/board.toml: cannot read the config");
    EXPECT_RC("config: a broken file", shmbus_publisher_open_config(bad, NULL, "imu", s, &pub), SHMBUS_ERR_CONFIG);
    expect_msg("config: broken says line:col and the fix", "bad.toml:3:9: slots = 3 must be a power of two");
    EXPECT_RC("config: a topic it does not declare", shmbus_subscriber_open_config(path, NULL, "cimuu", s, 0, &sub),
              SHMBUS_ERR_CONFIG);
    expect_msg("config: lists the topics", "the topics are: imu, cimu, derived");
    expect_msg("config: suggests the closest", "did you mean `cimu`?");
    EXPECT_RC("config: an empty path", shmbus_subscriber_open_config("", NULL, "imu", s, 0, &sub), SHMBUS_ERR_CONFIG);
    EXPECT_RC("config: NULL name", shmbus_subscriber_open_config(path, NULL, NULL, s, 0, &sub), SHMBUS_ERR_NULL);
    EXPECT_RC("config: NULL out", shmbus_publisher_open_config(path, NULL, "cimu", s, NULL), SHMBUS_ERR_NULL);
    EXPECT_RC("config: a bus no tool could name", shmbus_publisher_open_config(path, "lab bench", "cimu", s, &pub),
              SHMBUS_ERR_CONFIG);
    CHECK("config: strerror names the code", strstr(shmbus_strerror(SHMBUS_ERR_CONFIG), "config") != NULL);

    shmbus_frame_close(f);
    shmbus_schema_close(s);
    shmbus_schema_close(u);
    unlink(path);
    unlink(bad);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s RUST_KEY FREE_KEY\n", argv[0]);
        return 2;
    }
    uint32_t rust_key = (uint32_t)strtoul(argv[1], NULL, 0);
    uint32_t free_key = (uint32_t)strtoul(argv[2], NULL, 0);
    test_no_topic(free_key);
    test_rust_publisher(rust_key);
    test_c_publisher(free_key);
    test_config(rust_key, free_key);
    return finish();
}
