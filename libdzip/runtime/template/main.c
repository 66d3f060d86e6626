/* The exported network on a desktop: float32 inputs in, logits out.
 *
 *   ./model [FILE]            reads DZ_MODEL_INPUT_NUMEL float32 per sample (native byte order) from
 *                             FILE or stdin until its end; writes DZ_MODEL_OUTPUT_NUMEL float32 each
 *   ./model --text [FILE]     the same, as text: the top-1 class, then the logits
 *   ./model --info            one JSON line: the arena's parts and the init time
 *   ./model --bench N [FILE]  the first sample N times: one JSON line of per-call nanoseconds
 *
 * Exit status: 0, or 1 with one line on stderr (a short input, or the runtime's refusal). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static float x[DZ_MODEL_INPUT_NUMEL], y[DZ_MODEL_OUTPUT_NUMEL];

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int die(const char *what) {
    fprintf(stderr, "model: %s\n", what);
    return 1;
}

static int top1(const float *v, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 && !strncmp(argv[1], "--", 2) ? argv[1] : "";
    int argi = *mode ? 2 : 1;
    long reps = 0;
    FILE *in = stdin;
    long long t0 = now_ns(), init_ns;
    if (dz_model_init()) return die(dz_model_error());
    init_ns = now_ns() - t0;
    if (!strcmp(mode, "--info")) {
        printf("{\"arena_bytes\":%lu,\"packed_bytes\":%lu,\"activation_bytes\":%lu,\"init_bytes\":%lu,"
               "\"init_peak\":%lu,\"file_bytes\":%lu,\"ops_bytes\":%lu,\"init_ns\":%lld}\n",
               (unsigned long)DZ_MODEL_ARENA_BYTES, (unsigned long)DZ_MODEL_PACKED_BYTES,
               (unsigned long)DZ_MODEL_ACTIVATION_BYTES, (unsigned long)DZ_MODEL_INIT_BYTES,
               (unsigned long)dz_model_init_peak(), (unsigned long)DZ_MODEL_FILE_BYTES,
               (unsigned long)DZ_MODEL_OPS_BYTES, init_ns);
        return 0;
    }
    if (!strcmp(mode, "--bench")) {
        if (argc < 3 || (reps = strtol(argv[2], NULL, 10)) < 1) return die("--bench needs a count of calls.");
        argi = 3;
    } else if (*mode && strcmp(mode, "--text")) {
        return die("unknown option (use --text, --info or --bench N).");
    }
    if (argi < argc && !(in = fopen(argv[argi], "rb"))) return die("cannot open the input file.");
    if (reps) {
        long i;
        if (fread(x, sizeof x, 1, in) != 1) return die("the input holds no whole sample.");
        printf("[");
        for (i = 0; i < reps; i++) {
            long long t = now_ns();
            if (dz_predict(x, y)) return die(dz_model_error());
            printf("%s%lld", i ? "," : "", now_ns() - t);
        }
        printf("]\n");
        return 0;
    }
    for (;;) {
        size_t got = fread(x, sizeof *x, DZ_MODEL_INPUT_NUMEL, in);
        if (got == 0 && feof(in)) break;
        if (got != DZ_MODEL_INPUT_NUMEL) return die("the input ends inside a sample.");
        if (dz_predict(x, y)) return die(dz_model_error());
        if (*mode) {
            int i;
            printf("%d", top1(y, DZ_MODEL_OUTPUT_NUMEL));
            for (i = 0; i < DZ_MODEL_OUTPUT_NUMEL; i++) printf(" %.9g", y[i]);
            printf("\n");
        } else if (fwrite(y, sizeof y, 1, stdout) != 1) {
            return die("cannot write the logits.");
        }
    }
    return fflush(stdout) ? die("cannot write the logits.") : 0;
}
