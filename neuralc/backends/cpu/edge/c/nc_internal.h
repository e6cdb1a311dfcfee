/* Internal declarations shared by neuralc's generated model tables (model.c) and the edge
 * runtime (nc_runtime.c). Everything here is static to the one translation unit of a model,
 * so several models link into one program without clashing: only NC_PREFIX_* is exported. */
#ifndef NC_INTERNAL_H
#define NC_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NC_CAT3_(a, b, c) a##b##c
#define NC_CAT3(a, b, c) NC_CAT3_(a, b, c)
#define NC_API(n) NC_CAT3(NC_PREFIX, _, n)
#define NC_EXPORT __attribute__((visibility("default")))
#define NC_HIDDEN __attribute__((visibility("hidden")))
#define NC_MAYBE_UNUSED __attribute__((unused)) /* used by the executable only */

#define NC_MAX_RANK 32
#define NC_ERR_LEN 1024
#define NC_ALIGN 64

/* Size arithmetic that reports 64-bit overflow and division by zero instead of wrapping. */
typedef struct nc_ev {
    int overflow, divzero;
} nc_ev;

static inline int64_t nc_add(nc_ev *e, int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) { e->overflow = 1; return 0; }
    return r;
}

static inline int64_t nc_mul(nc_ev *e, int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) { e->overflow = 1; return 0; }
    return r;
}

/* Floor division and modulo with Python's semantics (neuralc.ir.dims.evaluate). */
static inline int64_t nc_fdiv(nc_ev *e, int64_t a, int64_t b) {
    if (b == 0) { e->divzero = 1; return 0; }
    if (a == INT64_MIN && b == -1) { e->overflow = 1; return 0; }
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q -= 1;
    return q;
}

static inline int64_t nc_fmod(nc_ev *e, int64_t a, int64_t b) {
    if (b == 0) { e->divzero = 1; return 0; }
    if (b == -1) return 0;
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}

static inline int64_t nc_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t nc_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* One input as given: its shape (what binding reads). */
typedef struct nc_shape {
    int rank;
    const int64_t *dims;
} nc_shape;

/* A weight in the embedded blob or the external file: name, dtype, shape, place. */
typedef struct nc_weight_desc {
    const char *name;
    const char *st_dtype; /* safetensors' name: F32, I64, ... */
    int rank;
    const int64_t *shape;
    uint64_t offset, bytes;
} nc_weight_desc;

/* Token ids of an integer input that an Embedding reads must lie in [0, rows). */
typedef struct nc_index_check {
    int input;
    int64_t rows;
    const char *where; /* "Embedding 'embedding' at model.nr:5:5" */
} nc_index_check;

static int nc_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nc_bind_fail(char *err, const nc_shape *in, int i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int nc_ev_fail(char *err, const nc_ev *ev);
static void nc_sizes_text(char *buf, size_t n, const int64_t *sz, const int *syms, int k);

#endif
