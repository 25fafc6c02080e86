/*
 * osu_like: the measurement of `cobre-comm bench`, written against plain MPI so that any
 * MPI library can be measured by exactly the same method (scripts/bench-peers.sh builds it
 * once per peer MPI).
 *
 * It mirrors crates/cobre-comm-bench/src/measure.rs (the per-size latency loop) and
 * workload.rs (the SDDP replay), with the parameters crates/cobre-comm-cli/src/bench.rs
 * derives from the command line:
 *   - element type f64 (MPI_DOUBLE), reduction Sum;
 *   - `bytes`: payload per rank for allreduce and broadcast, total gathered for allgatherv
 *     (spread as evenly as possible, the first `total % size` ranks one more element),
 *     0 for barrier;
 *   - for each size: a barrier, buffers allocated, `warmup` untimed then `iters` timed
 *     calls, each call timed on its own (monotonic clock) and summed;
 *     warmup = clamp(iters / 5, 10, 1000); timed iterations are `iters` up to 64 KiB and
 *     iters * 64 KiB / bytes above, at least 10 and at most `iters`;
 *   - before every call (untimed) one value per cache line of the send buffer changes;
 *   - each rank's average per call; min/avg/max across ranks.
 *
 * Usage:
 *   osu_like --name NAME --op OP --sizes B1,B2,.. [--iters K]
 *       prints {"ranks": N, "results": [{"backend": NAME, "op": OP, "bytes": B, "avg_us": ..,
 *       "min_us": .., "max_us": .., "iters": ..}, ..]}, the shape of `cobre-comm bench --json`.
 *   osu_like --name NAME --workload sddp [--scenarios S] [--state N] [--stages T] [--iterations I]
 *       prints [["NAME", [{"rank": 0, "size": N, "avg_us": ..}, ..]]], the shape of
 *       `cobre-comm bench --workload sddp --json`.
 *   osu_like --hello 1
 *       checks that the job works (every rank takes part in an allreduce of its rank) and
 *       prints {"ranks": N, "sum_ok": true, "library": "<first line of the library version>"}.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op { OP_ALLREDUCE, OP_ALLGATHERV, OP_BROADCAST, OP_BARRIER };
static const char *const OP_NAMES[] = {"allreduce", "allgatherv", "broadcast", "barrier"};

#define MAX_SIZES 64

static void die(const char *message) {
    fprintf(stderr, "osu_like: %s\n", message);
    MPI_Abort(MPI_COMM_WORLD, 2);
    exit(2);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *zeroed(size_t count) {
    void *p = calloc(count ? count : 1, sizeof(double));
    if (!p) die("out of memory");
    return p;
}

static double *filled(size_t count, double value) {
    double *p = malloc((count ? count : 1) * sizeof(double));
    if (!p) die("out of memory");
    for (size_t i = 0; i < count; i++) p[i] = value;
    return p;
}

/* Changes one value per cache line, so that every iteration sends different data. */
static void vary(double *buf, size_t len, size_t iteration) {
    for (size_t i = 0; i < len; i += 8) buf[i] = (double)iteration + 0.5;
}

/* BenchConfig::iters_for */
static size_t iters_for(size_t iters, size_t bytes) {
    const size_t full = 64 << 10;
    size_t at_least_one = iters > 0 ? iters : 1;
    if (bytes <= full) return at_least_one;
    size_t n = iters * full / bytes;
    if (n < 10) n = 10;
    return n < at_least_one ? n : at_least_one;
}

static void check(int rc, const char *what) {
    if (rc != MPI_SUCCESS) die(what);
}

/* One size of one collective on this rank: returns the sum of the timed calls, in ns. */
static uint64_t time_op(enum op op, size_t bytes, size_t warmup, size_t iters) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t len = bytes / 8;
    uint64_t total = 0;
    check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
    switch (op) {
    case OP_ALLREDUCE: {
        double *send = filled(len, 1.0), *recv = zeroed(len);
        for (size_t i = 0; i < warmup + iters; i++) {
            vary(send, len, i);
            uint64_t start = now_ns();
            check(MPI_Allreduce(send, recv, (int)len, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                  "allreduce");
            if (i >= warmup) total += now_ns() - start;
        }
        free(send);
        free(recv);
        break;
    }
    case OP_ALLGATHERV: {
        int *counts = malloc(sizeof(int) * (size_t)size), *displs = malloc(sizeof(int) * (size_t)size);
        if (!counts || !displs) die("out of memory");
        size_t acc = 0;
        for (int r = 0; r < size; r++) {
            size_t c = len / (size_t)size + ((size_t)r < len % (size_t)size ? 1 : 0);
            counts[r] = (int)c;
            displs[r] = (int)acc;
            acc += c;
        }
        size_t mine = (size_t)counts[rank];
        double *send = rank == 0 ? zeroed(mine) : filled(mine, (double)rank);
        double *recv = zeroed(len);
        for (size_t i = 0; i < warmup + iters; i++) {
            vary(send, mine, i);
            uint64_t start = now_ns();
            check(MPI_Allgatherv(send, (int)mine, MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE,
                                 MPI_COMM_WORLD),
                  "allgatherv");
            if (i >= warmup) total += now_ns() - start;
        }
        free(send);
        free(recv);
        free(counts);
        free(displs);
        break;
    }
    case OP_BROADCAST: {
        double *buf = zeroed(len);
        for (size_t i = 0; i < warmup + iters; i++) {
            if (rank == 0) vary(buf, len, i);
            uint64_t start = now_ns();
            check(MPI_Bcast(buf, (int)len, MPI_DOUBLE, 0, MPI_COMM_WORLD), "broadcast");
            if (i >= warmup) total += now_ns() - start;
        }
        free(buf);
        break;
    }
    case OP_BARRIER:
        for (size_t i = 0; i < warmup + iters; i++) {
            uint64_t start = now_ns();
            check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
            if (i >= warmup) total += now_ns() - start;
        }
        break;
    }
    return total;
}

/* workload.rs `gather`: equal counts, contiguous displacements. */
static void gather(const double *send, double *recv, size_t len, int size, int *counts,
                   int *displs) {
    for (int r = 0; r < size; r++) {
        counts[r] = (int)len;
        displs[r] = (int)((size_t)r * len);
    }
    check(MPI_Allgatherv(send, (int)len, MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE,
                         MPI_COMM_WORLD),
          "allgatherv");
}

/* workload.rs `run_sddp`: returns this rank's average time per iteration, in us. */
static double run_sddp(size_t scenarios, size_t state, size_t stages, size_t iterations,
                       size_t warmup) {
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t trial_len = scenarios * stages * state;
    size_t cut_len = scenarios * (state + 1);
    double *trial = zeroed(trial_len), *all_trials = zeroed(trial_len * (size_t)size);
    double *cuts = zeroed(cut_len), *all_cuts = zeroed(cut_len * (size_t)size);
    double totals[4] = {0, 0, 0, 0};
    int *counts = malloc(sizeof(int) * (size_t)size), *displs = malloc(sizeof(int) * (size_t)size);
    if (!counts || !displs) die("out of memory");
    check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
    uint64_t timed = 0;
    for (size_t iteration = 0; iteration < warmup + iterations; iteration++) {
        /* The "solver" work between collectives is not timed, but it changes the data. */
        for (size_t i = 0; i < trial_len; i += 8) trial[i] = (double)(iteration + i);
        uint64_t start = now_ns();
        gather(trial, all_trials, trial_len, size, counts, displs);
        for (size_t stage = 0; stage < stages; stage++) {
            if (cut_len > 0) cuts[0] = (double)(iteration * stages + stage);
            gather(cuts, all_cuts, cut_len, size, counts, displs);
        }
        double bounds[4] = {1.0, (double)iteration, 2.0, (double)scenarios};
        check(MPI_Allreduce(bounds, totals, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "allreduce");
        if (iteration >= warmup) timed += now_ns() - start;
    }
    free(trial);
    free(all_trials);
    free(cuts);
    free(all_cuts);
    free(counts);
    free(displs);
    return (double)timed / 1e3 / (double)(iterations > 0 ? iterations : 1);
}

static size_t parse_size(const char *s, const char *flag) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0') {
        fprintf(stderr, "osu_like: %s needs a non-negative integer, got %s\n", flag, s);
        exit(2);
    }
    return (size_t)v;
}

/* Gathers one value per rank to rank 0. */
static void gather_values(double mine, double *all) {
    check(MPI_Gather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "gather");
}

int main(int argc, char **argv) {
    const char *name = "mpi", *workload = NULL;
    int hello = 0;
    int op = -1;
    size_t sizes[MAX_SIZES], nsizes = 0;
    size_t iters = 1000, scenarios = 10, state = 200, stages = 60, iterations = 20;

    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (i + 1 >= argc) die("every option takes a value");
        const char *value = argv[++i];
        if (!strcmp(flag, "--name")) {
            name = value;
        } else if (!strcmp(flag, "--op")) {
            for (int k = 0; k < 4; k++)
                if (!strcmp(value, OP_NAMES[k])) op = k;
            if (op < 0) die("--op: expected allreduce, allgatherv, broadcast or barrier");
        } else if (!strcmp(flag, "--sizes")) {
            char *copy = strdup(value), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (nsizes == MAX_SIZES) die("--sizes: too many sizes");
                sizes[nsizes++] = parse_size(tok, flag);
            }
            free(copy);
        } else if (!strcmp(flag, "--iters")) {
            iters = parse_size(value, flag);
        } else if (!strcmp(flag, "--hello")) {
            hello = 1;
        } else if (!strcmp(flag, "--workload")) {
            if (strcmp(value, "sddp")) die("--workload: only sddp");
            workload = value;
        } else if (!strcmp(flag, "--scenarios")) {
            scenarios = parse_size(value, flag);
        } else if (!strcmp(flag, "--state")) {
            state = parse_size(value, flag);
        } else if (!strcmp(flag, "--stages")) {
            stages = parse_size(value, flag);
        } else if (!strcmp(flag, "--iterations")) {
            iterations = parse_size(value, flag);
        } else {
            die("unknown option");
        }
    }

    if (hello) {
        double mine = (double)rank, sum = 0;
        check(MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "allreduce");
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(version, &len);
        version[strcspn(version, "\n\r")] = '\0';
        for (char *c = version; *c; c++)
            if (*c == '"' || *c == '\\' || *c == '\t') *c = ' ';
        if (rank == 0)
            printf("{\"ranks\": %d, \"sum_ok\": %s, \"library\": \"%s\"}\n", size,
                   sum == (double)size * (size - 1) / 2 ? "true" : "false", version);
        fflush(stdout);
        MPI_Finalize();
        return 0;
    }

    if (workload) {
        /* bench.rs: iterations at least 1, warm-up 2. */
        double mine = run_sddp(scenarios, state, stages, iterations > 0 ? iterations : 1, 2);
        double *all = malloc(sizeof(double) * (size_t)size);
        if (!all) die("out of memory");
        gather_values(mine, all);
        if (rank == 0) {
            printf("[[\"%s\", [", name);
            for (int r = 0; r < size; r++)
                printf("%s{\"rank\": %d, \"size\": %d, \"avg_us\": %.6f}", r ? ", " : "", r, size,
                       all[r]);
            printf("]]]\n");
        }
        fflush(stdout);
        free(all);
        MPI_Finalize();
        return 0;
    }

    if (op < 0) die("--op or --workload is required");
    if (op == OP_BARRIER) {
        sizes[0] = 0;
        nsizes = 1;
    }
    if (nsizes == 0) die("--sizes is required");
    /* bench.rs: iters at least 1, warm-up iters / 5 within [10, 1000] (run_rank: at least 1). */
    if (iters == 0) iters = 1;
    size_t warmup = iters / 5;
    if (warmup < 10) warmup = 10;
    if (warmup > 1000) warmup = 1000;

    double avg[MAX_SIZES];
    size_t timed_iters[MAX_SIZES];
    for (size_t s = 0; s < nsizes; s++) {
        timed_iters[s] = iters_for(iters, sizes[s]);
        uint64_t ns = time_op((enum op)op, sizes[s], warmup, timed_iters[s]);
        avg[s] = (double)ns / 1e3 / (double)timed_iters[s];
    }
    check(MPI_Barrier(MPI_COMM_WORLD), "barrier");

    double *all = malloc(sizeof(double) * (size_t)size);
    if (!all) die("out of memory");
    if (rank == 0) printf("{\"ranks\": %d, \"results\": [", size);
    for (size_t s = 0; s < nsizes; s++) {
        gather_values(avg[s], all);
        if (rank != 0) continue;
        double sum = 0, lo = all[0], hi = 0;
        for (int r = 0; r < size; r++) {
            sum += all[r];
            if (all[r] < lo) lo = all[r];
            if (all[r] > hi) hi = all[r];
        }
        printf("%s\n  {\"backend\": \"%s\", \"op\": \"%s\", \"bytes\": %zu, \"avg_us\": %.6f, "
               "\"min_us\": %.6f, \"max_us\": %.6f, \"iters\": %zu}",
               s ? "," : "", name, OP_NAMES[op], sizes[s], sum / size, lo, hi, timed_iters[s]);
    }
    if (rank == 0) printf("\n]}\n");
    fflush(stdout);
    free(all);
    MPI_Finalize();
    return 0;
}
