/* append_bench.c - in-process append throughput of the broker's publish path.
 *
 *   build/append_bench [records] [record_size] [fsync] [per_call]
 *
 * Opens a broker on a fresh temporary data directory, publishes |records|
 * records of |record_size| bytes to one single-partition stream through
 * jn_broker_publish (|per_call| records per call), running the loop as a
 * server would (tails flushed once per loop iteration), and prints
 * records/s and MB/s. fsync: never | interval | always.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "core/broker.h"

static int rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv) {
    long records = argc > 1 ? atol(argv[1]) : 2000000;
    long size = argc > 2 ? atol(argv[2]) : 100;
    const char *fsync = argc > 3 ? argv[3] : "never";
    long per_call = argc > 4 ? atol(argv[4]) : 1;
    if (records <= 0 || size < 0 || size > 1 << 20 || per_call <= 0 || per_call > 10000) {
        fprintf(stderr, "usage: append_bench [records] [record_size] [never|interval|always] [per_call]\n");
        return 2;
    }
    char dir[] = "/tmp/junction-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;

    uv_loop_t loop;
    uv_loop_init(&loop);
    jn_broker_config_t cfg;
    jn_broker_config_default(&cfg);
    cfg.data_dir = dir;
    cfg.stream_defaults.fsync = !strcmp(fsync, "always") ? JN_FSYNC_ALWAYS
                              : !strcmp(fsync, "interval") ? JN_FSYNC_INTERVAL : JN_FSYNC_NEVER;
    jn_broker_t *b;
    if (jn_broker_open(&loop, &cfg, NULL, &b) < 0) return 1;

    uint8_t *payload = malloc((size_t)size + 1);
    memset(payload, 'x', (size_t)size);
    jn_record_t *recs = calloc((size_t)per_call, sizeof(*recs));
    for (long i = 0; i < per_call; i++) {
        recs[i].key_len = -1;
        recs[i].value = payload;
        recs[i].value_len = (int32_t)size;
    }
    uint64_t t0 = jn_mono_ns();
    long done = 0;
    while (done < records) {
        /* One loop iteration's worth of publishes, as a busy server sees. */
        for (int k = 0; k < 64 && done < records; k++) {
            size_t n = (size_t)(records - done < per_call ? records - done : per_call);
            if (jn_broker_publish(b, "bench", 5, recs, n, 0, NULL) < 0) {
                fprintf(stderr, "publish failed\n");
                return 1;
            }
            done += (long)n;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    jn_broker_flush(b);
    uint64_t t1 = jn_mono_ns();
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"records\":%ld,\"record_size\":%ld,\"fsync\":\"%s\",\"per_call\":%ld,"
           "\"seconds\":%.3f,\"records_per_s\":%.0f,\"mb_per_s\":%.1f}\n",
           records, size, fsync, per_call, secs, records / secs, records * (double)size / secs / 1e6);
    jn_broker_close(b);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(payload);
    free(recs);
    return rm_rf(dir) == 0 ? 0 : 1;
}
