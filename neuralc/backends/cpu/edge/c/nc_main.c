/* neuralc edge executable: ./model x.npy -o y.npy, --input NAME=FILE, --info, --bench N.
 *
 * Included after nc_runtime.c in an executable build. Reads .npy inputs with a strict parser
 * (any malformed, truncated or foreign file is refused with one line, never read past its
 * end), checks them against the model's signature with neuralc's messages, runs the model
 * and writes .npy outputs. Exit status: 0 success, 1 bad input data or weights, 2 bad usage
 * (an unknown option, a missing or unwritable file), 3 out of memory.
 */
#include <sys/stat.h>
#include <time.h>

enum { NC_EXIT_OK = 0, NC_EXIT_DATA = 1, NC_EXIT_USAGE = 2, NC_EXIT_MEMORY = 3 };
#define NC_NPY_MAX_HEADER 65536

static const char *nc_prog = "model";

static int nc_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nc_die(int code, const char *fmt, ...) {
    char msg[NC_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    nc_vfail(msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "%s: error: %s\n", nc_prog, msg);
    return code;
}

/* -- .npy files ---------------------------------------------------------------------------- */

typedef struct nc_npy {
    const char *path;
    char descr[32];   /* as in the file, for messages */
    char kind;        /* numpy kind: f i u b, or another (not numbers) */
    int itemsize, swap, fortran, rank;
    int64_t shape[NC_MAX_RANK];
    uint64_t count, bytes;
    unsigned char *data; /* 64-byte aligned, exactly bytes long */
} nc_npy;

typedef struct nc_lit {
    const unsigned char *p, *end;
} nc_lit;

static void nc_lit_ws(nc_lit *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
        l->p++;
}

static int nc_lit_take(nc_lit *l, char c) {
    nc_lit_ws(l);
    if (l->p < l->end && *l->p == (unsigned char)c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (the header's keys and descr). */
static int nc_lit_string(nc_lit *l, char *out, size_t cap) {
    nc_lit_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return -1;
    unsigned char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || *l->p < 0x20 || n + 1 >= cap) return -1;
        out[n++] = (char)*l->p++;
    }
    if (l->p >= l->end) return -1;
    l->p++;
    out[n] = 0;
    return 0;
}

static int nc_lit_word(nc_lit *l, const char *w) {
    size_t n = strlen(w);
    nc_lit_ws(l);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n) != 0) return 0;
    if ((size_t)(l->end - l->p) > n) {
        unsigned char c = l->p[n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
            return 0;
    }
    l->p += n;
    return 1;
}

/* shape: a tuple of non-negative ints; "(5,)" for one (Python's literal syntax). */
static int nc_lit_shape(nc_lit *l, int64_t *shape, int *rank, const char **why) {
    *rank = 0;
    if (!nc_lit_take(l, '(')) return *why = "the shape is not a tuple", -1;
    if (nc_lit_take(l, ')')) return 0;
    while (1) {
        nc_lit_ws(l);
        if (l->p >= l->end || *l->p < '0' || *l->p > '9')
            return *why = "the shape holds something other than non-negative integers", -1;
        if (*l->p == '0' && l->p + 1 < l->end && l->p[1] >= '0' && l->p[1] <= '9')
            return *why = "the shape holds a number with a leading zero", -1;
        int64_t v = 0;
        while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
            if (v > (INT64_MAX / 4 - 9) / 10) return *why = "a dim of the shape is too large", -1;
            v = v * 10 + (*l->p++ - '0');
        }
        if (*rank >= NC_MAX_RANK) return *why = "the shape has more than 32 dims", -1;
        shape[(*rank)++] = v;
        int comma = nc_lit_take(l, ',');
        if (nc_lit_take(l, ')')) {
            if (*rank == 1 && !comma) return *why = "the shape is not a tuple", -1;
            return 0;
        }
        if (!comma) return *why = "the shape is not a tuple of integers", -1;
    }
}

/* descr: [<>|=] kind digits, e.g. '<f4', '|b1', '<U3', '<M8[s]'. */
static int nc_parse_descr(nc_npy *a, const char **why) {
    const char *s = a->descr;
    char order = '=';
    if (*s == '<' || *s == '>' || *s == '|' || *s == '=') order = *s++;
    if (!*s || !strchr("biufcmMOSUV", *s)) return *why = "its dtype is not one numpy writes", -1;
    a->kind = *s++;
    if (a->kind == 'O' && !*s) { /* pickled Python objects: refused once the header is read */
        a->itemsize = 8;
        return 0;
    }
    if (*s < '1' || *s > '9') return *why = "its dtype has no item size", -1;
    long size = 0;
    while (*s >= '0' && *s <= '9' && size < 100000) size = size * 10 + (*s++ - '0');
    if (*s && !((a->kind == 'M' || a->kind == 'm') && *s == '['))
        return *why = "its dtype is not one numpy writes", -1;
    if (a->kind == 'U') size *= 4;
    if (size < 1 || size > 100000) return *why = "its dtype has an unusable item size", -1;
    a->itemsize = (int)size;
    a->swap = order == '>' && size > 1;
    int numeric = (a->kind == 'f' && (size == 2 || size == 4 || size == 8)) ||
                  ((a->kind == 'i' || a->kind == 'u') &&
                   (size == 1 || size == 2 || size == 4 || size == 8)) ||
                  (a->kind == 'b' && size == 1);
    if (!numeric && strchr("biuf", a->kind)) a->kind = 'x'; /* float128 and the like */
    return 0;
}

/* The header dict: exactly descr, fortran_order and shape, as numpy requires. */
static int nc_parse_header(nc_npy *a, const unsigned char *h, size_t n, const char **why) {
    nc_lit l = {h, h + n};
    int have_descr = 0, have_order = 0, have_shape = 0;
    char key[32];
    if (!nc_lit_take(&l, '{')) return *why = "its header is not a dict", -1;
    while (!nc_lit_take(&l, '}')) {
        if (nc_lit_string(&l, key, sizeof key) || !nc_lit_take(&l, ':'))
            return *why = "its header is not a dict of the three keys numpy writes", -1;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            nc_lit_ws(&l);
            if (l.p < l.end && *l.p == '[')
                return *why = "it holds a structured array (fields), not one of numbers", -1;
            if (nc_lit_string(&l, a->descr, sizeof a->descr))
                return *why = "its descr is not a dtype string", -1;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (nc_lit_word(&l, "True")) a->fortran = 1;
            else if (nc_lit_word(&l, "False")) a->fortran = 0;
            else return *why = "its fortran_order is not True or False", -1;
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (nc_lit_shape(&l, a->shape, &a->rank, why)) return -1;
            have_shape = 1;
        } else {
            return *why = "its header has a key other than descr, fortran_order and shape", -1;
        }
        if (!nc_lit_take(&l, ',')) {
            if (!nc_lit_take(&l, '}')) return *why = "its header is not a dict", -1;
            break;
        }
    }
    nc_lit_ws(&l);
    if (l.p != l.end) return *why = "its header has text after the dict", -1;
    if (!have_descr || !have_order || !have_shape)
        return *why = "its header lacks descr, fortran_order or shape", -1;
    return nc_parse_descr(a, why);
}

/* Reads path into a; returns 0, or an exit status with the message printed. */
static int nc_read_npy(const char *path, nc_npy *a) {
    unsigned char pre[12], *header = NULL;
    const char *why = NULL;
    struct stat st;
    memset(a, 0, sizeof *a);
    a->path = path;
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT) return nc_die(NC_EXIT_USAGE, "no such input file: %s", path);
    if (!f) return nc_die(NC_EXIT_USAGE, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return nc_die(NC_EXIT_USAGE, "cannot read %s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    int rc = NC_EXIT_DATA;
    if (size < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        nc_die(rc, "%s is not a .npy file (save inputs with numpy.save)", path);
        goto done;
    }
    uint64_t pre_len = 10, hlen;
    if (pre[6] == 1 && pre[7] == 0) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    } else if ((pre[6] == 2 || pre[6] == 3) && pre[7] == 0) {
        if (size < 12 || fread(pre + 10, 1, 2, f) != 2) {
            why = "it ends inside its header";
            goto bad;
        }
        pre_len = 12;
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
               (uint64_t)pre[11] << 24;
    } else {
        why = "it has a format version this reader does not know";
        goto bad;
    }
    if (hlen > NC_NPY_MAX_HEADER) {
        why = "its header is longer than 64 KiB";
        goto bad;
    }
    if (hlen > size - pre_len) {
        why = "it ends inside its header";
        goto bad;
    }
    header = malloc(hlen ? (size_t)hlen : 1);
    if (!header) {
        rc = nc_die(NC_EXIT_MEMORY, "cannot allocate %llu bytes", (unsigned long long)hlen);
        goto done;
    }
    if (fread(header, 1, (size_t)hlen, f) != hlen) {
        why = "it ends inside its header";
        goto bad;
    }
    if (nc_parse_header(a, header, (size_t)hlen, &why)) goto bad;
    if (a->kind == 'O') {
        nc_die(rc, "%s holds Python objects, not numbers; neuralc reads only numeric .npy "
                   "arrays", path);
        goto done;
    }
    nc_ev ev = {0, 0};
    int64_t count = 1;
    for (int k = 0; k < a->rank; k++) count = nc_mul(&ev, count, a->shape[k]);
    int64_t bytes = nc_mul(&ev, count, a->itemsize);
    if (ev.overflow) {
        why = "its shape holds more elements than any file can";
        goto bad;
    }
    uint64_t have = size - pre_len - hlen;
    if ((uint64_t)bytes > have) {
        char text[160];
        snprintf(text, sizeof text, "truncated: its shape needs %lld bytes of data, it has %llu",
                 (long long)bytes, (unsigned long long)have);
        nc_die(rc, "%s is not a readable .npy array (%s)", path, text);
        goto done;
    }
    if ((uint64_t)bytes < have) {
        char text[160];
        snprintf(text, sizeof text, "%llu bytes follow the data its shape gives",
                 (unsigned long long)(have - (uint64_t)bytes));
        nc_die(rc, "%s is not a readable .npy array (%s)", path, text);
        goto done;
    }
    a->count = (uint64_t)count;
    a->bytes = (uint64_t)bytes;
    a->data = nc_aligned(a->bytes);
    if (!a->data) {
        rc = nc_die(NC_EXIT_MEMORY, "cannot allocate %llu bytes for %s",
                    (unsigned long long)a->bytes, path);
        goto done;
    }
    if (a->bytes && fread(a->data, 1, (size_t)a->bytes, f) != a->bytes) {
        why = "it could not be read to its end";
        goto bad;
    }
    rc = 0;
    goto done;
bad:
    nc_die(rc, "%s is not a readable .npy array (%s)", path, why);
done:
    free(header);
    fclose(f);
    return rc;
}

/* numpy's str(dtype) for messages: float32, int64, bool, complex64, '>f4', '<U3'. */
static void nc_dtype_name(const nc_npy *a, char *out, size_t n) {
    static const char *const names[] = {"bool", "int8", "int16", "int32", "int64", "uint8",
                                        "uint16", "uint32", "uint64", "float16", "float32",
                                        "float64"};
    int idx = -1, sz = a->itemsize, lg = sz == 1 ? 0 : sz == 2 ? 1 : sz == 4 ? 2 : 3;
    if (a->swap) {
        snprintf(out, n, "%.31s", a->descr);
        return;
    }
    if (a->kind == 'b') idx = 0;
    else if (a->kind == 'i') idx = 1 + lg;
    else if (a->kind == 'u') idx = 5 + lg;
    else if (a->kind == 'f') idx = 9 + lg - 1;
    if (idx >= 0) snprintf(out, n, "%s", names[idx]);
    else if (a->kind == 'c') snprintf(out, n, "complex%d", 8 * sz);
    else snprintf(out, n, "%.31s", a->descr);
}

static uint64_t nc_load_uint(const unsigned char *p, int size, int swap) {
    uint64_t v = 0;
    for (int k = 0; k < size; k++) v |= (uint64_t)p[swap ? size - 1 - k : k] << (8 * k);
    return v;
}

static double nc_half_to_double(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0) v = m * (1.0 / 16777216.0);
    else if (e == 31) v = m ? __builtin_nan("") : __builtin_inf();
    else {
        v = (1024 + m);
        for (int k = e - 25; k > 0; k--) v *= 2;
        for (int k = e - 25; k < 0; k++) v /= 2;
    }
    return (h & 0x8000) ? -v : v;
}

static uint16_t nc_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
    int ne = (int)e - 127 + 15;
    if (ne >= 31) return (uint16_t)(sign | 0x7c00);
    if (ne <= 0) {
        if (ne < -10) return (uint16_t)sign;
        m |= 0x800000;
        int shift = 14 - ne;
        uint32_t half = m >> shift, rest = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = (uint32_t)ne << 10 | m >> 13, rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

static uint16_t nc_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* Element k of a (C-order index of its logical shape; fortran order handled). */
static const unsigned char *nc_elem(const nc_npy *a, uint64_t k) {
    if (!a->fortran || a->rank < 2) return a->data + k * (uint64_t)a->itemsize;
    uint64_t off = 0, stride = 1, rest = k;
    int64_t idx[NC_MAX_RANK];
    for (int d = a->rank - 1; d >= 0; d--) {
        idx[d] = (int64_t)(rest % (uint64_t)a->shape[d]);
        rest /= (uint64_t)a->shape[d];
    }
    for (int d = 0; d < a->rank; d++) {
        off += (uint64_t)idx[d] * stride;
        stride *= (uint64_t)a->shape[d];
    }
    return a->data + off * (uint64_t)a->itemsize;
}

/* Converts a to the model's element type in place of its data (numpy's astype). */
static int nc_convert(nc_npy *a, int dtype) {
    int out_size = nc_itemsize(dtype);
    int same = !a->swap && !(a->fortran && a->rank > 1) && a->itemsize == out_size &&
               ((dtype == NC_F32 && a->kind == 'f') || (dtype == NC_F64 && a->kind == 'f') ||
                (dtype == NC_I64 && a->kind == 'i') || (dtype == NC_I32 && a->kind == 'i') ||
                (dtype == NC_I8 && a->kind == 'i'));  /* bools are normalised to 0 and 1 */
    if (same) return 0;
    uint64_t bytes = a->count * (uint64_t)out_size;
    unsigned char *dst = nc_aligned(bytes);
    if (!dst) return nc_die(NC_EXIT_MEMORY, "cannot allocate %llu bytes to convert %s",
                            (unsigned long long)bytes, a->path);
    for (uint64_t k = 0; k < a->count; k++) {
        const unsigned char *p = nc_elem(a, k);
        uint64_t raw = nc_load_uint(p, a->itemsize, a->swap);
        unsigned char *q = dst + k * (uint64_t)out_size;
        if (a->kind == 'f') {
            double v;
            if (a->itemsize == 2) v = nc_half_to_double((uint16_t)raw);
            else if (a->itemsize == 4) { uint32_t b = (uint32_t)raw; float x; memcpy(&x, &b, 4); v = x; }
            else memcpy(&v, &raw, 8);
            float x = (float)v;
            uint16_t h;
            switch (dtype) {
            case NC_F32: memcpy(q, &x, 4); break;
            case NC_F64: memcpy(q, &v, 8); break;
            case NC_F16: h = nc_float_to_half(x); memcpy(q, &h, 2); break;
            default: h = nc_float_to_bf16(x); memcpy(q, &h, 2); break;
            }
        } else if (dtype == NC_BOOL) {
            *q = raw != 0;
        } else {
            /* Integer to integer wraps as numpy's astype does (two's complement). */
            int64_t v;
            int bits = 8 * a->itemsize;
            if (a->kind == 'i' && bits < 64 && (raw >> (bits - 1)) & 1) raw |= ~0ull << bits;
            memcpy(&v, &raw, 8);
            if (dtype == NC_I64) memcpy(q, &v, 8);
            else if (dtype == NC_I32) { int32_t w = (int32_t)(uint32_t)(uint64_t)v; memcpy(q, &w, 4); }
            else *(int8_t *)q = (int8_t)(uint8_t)(uint64_t)v;
        }
    }
    free(a->data);
    a->data = dst;
    a->bytes = bytes;
    a->itemsize = out_size;
    a->swap = 0;
    a->fortran = 0;
    return 0;
}

/* neuralc.runtime.signature's dtype rules, in input order, then the conversion. */
static int nc_check_dtypes(nc_npy *arrays) {
    for (int i = 0; i < NC_NUM_INPUTS; i++) {
        const nc_tensor_info *t = &nc_model.inputs[i];
        nc_npy *a = &arrays[i];
        char have[40];
        const char *want = nc_np_name(t->dtype);
        nc_dtype_name(a, have, sizeof have);
        if (!strchr("biuf", a->kind))
            return nc_die(NC_EXIT_DATA, "input '%s' is not an array of numbers (dtype %s)",
                          t->name, have);
        if (t->dtype == NC_F32 || t->dtype == NC_F16 || t->dtype == NC_BF16 ||
            t->dtype == NC_F64) {
            if (a->kind != 'f')
                return nc_die(NC_EXIT_DATA, "input '%s' has dtype %s, expected %s; convert it "
                                            "with .astype(np.%s)", t->name, have, want, want);
        } else if (t->dtype == NC_BOOL) {
            if (a->kind != 'b')
                return nc_die(NC_EXIT_DATA, "input '%s' has dtype %s, expected bool", t->name,
                              have);
        } else if (a->kind != 'i' && a->kind != 'u') {
            return nc_die(NC_EXIT_DATA, "input '%s' has dtype %s, expected integer indices "
                                        "(%s); pass integer indices, e.g. .astype(np.%s)",
                          t->name, have, want, want);
        }
    }
    for (int i = 0; i < NC_NUM_INPUTS; i++) {
        int rc = nc_convert(&arrays[i], nc_model.inputs[i].dtype);
        if (rc) return rc;
    }
    return 0;
}

static int nc_write_npy(const char *path, int dtype, const int64_t *shape, int rank,
                        const void *data, uint64_t count) {
    const char *descr = dtype == NC_F32 || dtype == NC_BF16 ? "<f4" : dtype == NC_F16 ? "<f2"
                      : dtype == NC_F64 ? "<f8" : dtype == NC_I64 ? "<i8"
                      : dtype == NC_I32 ? "<i4" : dtype == NC_I8 ? "|i1" : "|b1";
    char dict[NC_ERR_LEN], shape_text[NC_ERR_LEN / 2];
    nc_shape_text(shape_text, sizeof shape_text, shape, rank);
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape_text);
    if (n < 0 || n >= (int)sizeof dict) n = (int)sizeof dict - 1;
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return nc_die(NC_EXIT_USAGE, "cannot write %s: %s", path, strerror(errno));
    unsigned hlen = (unsigned)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (int k = 0; ok && k < pad; k++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    if (dtype == NC_BF16) {
        for (uint64_t k = 0; ok && k < count; k++) {
            uint16_t h;
            memcpy(&h, (const unsigned char *)data + 2 * k, 2);
            uint32_t b = (uint32_t)h << 16;
            ok = fwrite(&b, 4, 1, f) == 1;
        }
    } else if (count) {
        size_t bytes = (size_t)count * (size_t)nc_itemsize(dtype);
        ok = ok && fwrite(data, 1, bytes, f) == bytes;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok) return nc_die(NC_EXIT_USAGE, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* -- the command line ---------------------------------------------------------------------- */

typedef struct nc_args {
    const char *inputs[64];
    const char *names[64]; /* NAME of NAME=FILE, or NULL */
    int n_inputs, n_named;
    const char *outputs[64];
    int n_outputs;
    const char *dims[64];
    int n_dims;
    const char *weights;
    long bench, threads;
    int info, quiet, check_finite;
} nc_args;

static void nc_usage(FILE *to) {
    fprintf(to,
            "usage: %s [INPUT.npy ...] [--input NAME=FILE ...] [-o OUT.npy ...] [--info]\n"
            "       [--bench N [--dim NAME=N ...]] [--threads N] [--weights FILE] "
            "[--check-finite] [-q]\n"
            "Runs the neuralc model %s (one -o per output, in order; no -o prints them).\n"
            "Exit status: 0 success, 1 bad input data or weights, 2 bad usage, 3 out of "
            "memory.\n", nc_prog, nc_model.name);
}

static int nc_number(const char *opt, const char *s, long lo, long hi, long *v) {
    char *end;
    errno = 0;
    *v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || end == s || *v < lo || *v > hi)
        return nc_die(NC_EXIT_USAGE, "%s expects a number from %ld to %ld, got '%s'", opt, lo,
                      hi, s ? s : "");
    return 0;
}

static int nc_parse_args(int argc, char **argv, nc_args *a) {
    int only_files = 0;
    memset(a, 0, sizeof *a);
    a->threads = -1;
    for (int k = 1; k < argc; k++) {
        const char *s = argv[k];
        const char *next = k + 1 < argc ? argv[k + 1] : NULL;
        int takes = 1;
        if (only_files || s[0] != '-' || strcmp(s, "-") == 0) {
            takes = 0;
            if (a->n_inputs >= 64) return nc_die(NC_EXIT_USAGE, "too many inputs");
            a->names[a->n_inputs] = NULL;
            a->inputs[a->n_inputs++] = s;
        } else if (strcmp(s, "--") == 0) {
            only_files = 1;
            takes = 0;
        } else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            nc_usage(stdout);
            exit(0);
        } else if (strcmp(s, "--info") == 0) {
            a->info = 1;
            takes = 0;
        } else if (strcmp(s, "-q") == 0 || strcmp(s, "--quiet") == 0) {
            a->quiet = 1;
            takes = 0;
        } else if (strcmp(s, "--check-finite") == 0) {
            a->check_finite = 1;
            takes = 0;
        } else if (!next) {
            if (strcmp(s, "--input") && strcmp(s, "-i") && strcmp(s, "-o") &&
                strcmp(s, "--output") && strcmp(s, "--bench") && strcmp(s, "--threads") &&
                strcmp(s, "--weights") && strcmp(s, "--dim"))
                return nc_die(NC_EXIT_USAGE, "unknown option '%s' (see %s --help)", s, nc_prog);
            return nc_die(NC_EXIT_USAGE, "%s needs a value", s);
        } else if (strcmp(s, "--input") == 0 || strcmp(s, "-i") == 0) {
            if (a->n_inputs >= 64) return nc_die(NC_EXIT_USAGE, "too many inputs");
            const char *eq = strchr(next, '=');
            a->names[a->n_inputs] = eq ? next : NULL;
            a->inputs[a->n_inputs++] = eq ? eq + 1 : next;
            a->n_named += eq != NULL;
        } else if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            if (a->n_outputs >= 64) return nc_die(NC_EXIT_USAGE, "too many outputs");
            a->outputs[a->n_outputs++] = next;
        } else if (strcmp(s, "--dim") == 0) {
            if (a->n_dims >= 64) return nc_die(NC_EXIT_USAGE, "too many --dim");
            a->dims[a->n_dims++] = next;
        } else if (strcmp(s, "--bench") == 0) {
            if (nc_number(s, next, 1, 10000000, &a->bench)) return NC_EXIT_USAGE;
        } else if (strcmp(s, "--threads") == 0) {
            if (nc_number(s, next, 0, 1024, &a->threads)) return NC_EXIT_USAGE;
        } else if (strcmp(s, "--weights") == 0) {
            a->weights = next;
        } else {
            return nc_die(NC_EXIT_USAGE, "unknown option '%s' (see %s --help)", s, nc_prog);
        }
        k += takes;
    }
    if (a->n_named && a->n_named != a->n_inputs)
        return nc_die(NC_EXIT_USAGE, "give every --input as NAME=FILE, or none of them");
    return 0;
}

static void nc_input_list(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < NC_NUM_INPUTS && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "",
                                 nc_model.inputs[i].name);
}

/* The files in input order (named ones placed by name), as neuralc's _order does. */
static int nc_order_inputs(const nc_args *a, const char **files) {
    char listing[NC_ERR_LEN / 2];
    nc_input_list(listing, sizeof listing);
    if (!a->n_named) {
        if (a->n_inputs != NC_NUM_INPUTS)
            return nc_die(NC_EXIT_DATA, "wrong number of inputs: expected %d (%s), got %d",
                          NC_NUM_INPUTS, listing, a->n_inputs);
        for (int i = 0; i < NC_NUM_INPUTS; i++) files[i] = a->inputs[i];
        return 0;
    }
    for (int i = 0; i < NC_NUM_INPUTS; i++) files[i] = NULL;
    for (int k = 0; k < a->n_inputs; k++) {
        size_t len = (size_t)(a->inputs[k] - 1 - a->names[k]);
        int found = -1;
        for (int i = 0; i < NC_NUM_INPUTS; i++)
            if (strlen(nc_model.inputs[i].name) == len &&
                memcmp(nc_model.inputs[i].name, a->names[k], len) == 0)
                found = i;
        if (found < 0)
            return nc_die(NC_EXIT_DATA, "unknown input '%.*s'; the inputs are: %s", (int)len,
                          a->names[k], listing);
        if (files[found])
            return nc_die(NC_EXIT_USAGE, "input '%s' is given twice",
                          nc_model.inputs[found].name);
        files[found] = a->inputs[k];
    }
    for (int i = 0; i < NC_NUM_INPUTS; i++)
        if (!files[i])
            return nc_die(NC_EXIT_DATA, "missing input '%s'; the inputs are: %s",
                          nc_model.inputs[i].name, listing);
    return 0;
}

static const char *nc_dtype_text(int dtype) { return nc_np_name(dtype); }

static void nc_range_text(const nc_symbol_info *s, char *buf, size_t n) {
    int used;
    if (s->min < 0 && s->max < 0) used = snprintf(buf, n, "%s: any size", s->name);
    else if (s->max < 0) used = snprintf(buf, n, "%s: %lld..", s->name,
                                         (long long)(s->min < 0 ? 1 : s->min));
    else used = snprintf(buf, n, "%s: %lld..%lld", s->name, (long long)(s->min < 0 ? 1 : s->min),
                         (long long)s->max);
    if (s->step > 1 && used > 0 && (size_t)used < n)
        used += snprintf(buf + used, n - (size_t)used, " step %lld", (long long)s->step);
    if (s->nominal >= 0 && used > 0 && (size_t)used < n)
        snprintf(buf + used, n - (size_t)used, " (nominal %lld)", (long long)s->nominal);
}

/* The weights file of an --external-weights build: --weights, else beside the binary. */
static const char *nc_default_weights(char *buf, size_t n) {
#if NC_EXTERNAL_WEIGHTS
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0 || (size_t)len >= n - 1) return NC_WEIGHTS_FILE;
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    size_t dir = slash ? (size_t)(slash - buf) + 1 : 0;
    if (dir + strlen(NC_WEIGHTS_FILE) + 1 > n) return NC_WEIGHTS_FILE;
    memcpy(buf + dir, NC_WEIGHTS_FILE, strlen(NC_WEIGHTS_FILE) + 1);
    return buf;
#else
    (void)buf;
    (void)n;
    return NULL;
#endif
}

static int nc_info(const char *weights_path, int threads) {
    const nc_model_info *m = &nc_model;
    char text[512];
    printf("model: %s (neuralc %s, -O%d, precision %s)\n", m->name, m->neuralc_version,
           m->opt_level, m->precision);
    printf("target: %s, cpu %s, %d-bit vectors\n", m->triple, m->cpu, m->vector_bits);
    printf("inputs:\n");
    for (int i = 0; i < m->num_inputs; i++)
        printf("  %s: %s %s\n", m->inputs[i].name, nc_dtype_text(m->inputs[i].dtype),
               m->inputs[i].shape);
    printf("outputs:\n");
    for (int i = 0; i < m->num_outputs; i++)
        printf("  %s: %s %s\n", m->outputs[i].name, nc_dtype_text(m->outputs[i].dtype),
               m->outputs[i].shape);
    if (m->num_symbols) {
        printf("dims (the order of the sizes array):\n");
        for (int k = 0; k < m->num_symbols; k++) {
            nc_range_text(&m->symbols[k], text, sizeof text);
            printf("  %s\n", text);
        }
    }
    printf("arena: %s bytes per run\n", m->arena_bytes);
    if (weights_path) {
        char digest[65], err[NC_ERR_LEN];
        if (nc_file_sha256(weights_path, digest, err))
            return nc_die(NC_EXIT_USAGE, "%s", err);
        printf("weights: %s, %d tensors, %llu bytes, sha256 %s%s\n", weights_path,
               m->num_weights, (unsigned long long)m->weights_bytes, digest,
               strcmp(digest, m->weights_sha256) == 0 ? " (the file it was built with)"
                                                       : " (not the file it was built with)");
    } else {
        printf("weights: embedded, %d tensors, %llu bytes, sha256 %s\n", m->num_weights,
               (unsigned long long)m->weights_bytes, m->weights_sha256);
    }
    printf("threads: %d (NEURALC_THREADS or --threads sets the pool; the kernels run on one "
           "thread in this version)\n", threads);
    return 0;
}

static double nc_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int nc_cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Sizes for --bench without inputs: the build's defaults, changed by --dim NAME=N. */
static int nc_bench_sizes_of(const nc_args *a, int64_t *sz) {
    for (int k = 0; k < NC_NUM_SYMBOLS; k++) sz[k] = nc_bench_sizes[k];
    for (int d = 0; d < a->n_dims; d++) {
        const char *eq = strchr(a->dims[d], '=');
        int found = -1;
        long v;
        size_t len = eq ? (size_t)(eq - a->dims[d]) : 0;
        for (int k = 0; eq && k < NC_NUM_SYMBOLS; k++)
            if (strlen(nc_model.symbols[k].name) == len &&
                memcmp(nc_model.symbols[k].name, a->dims[d], len) == 0)
                found = k;
        if (found < 0)
            return nc_die(NC_EXIT_USAGE, "--dim expects NAME=N with NAME a symbolic dim of "
                                         "the model, got '%s'", a->dims[d]);
        if (nc_number("--dim", eq + 1, 1, INT32_MAX, &v)) return NC_EXIT_USAGE;
        sz[found] = v;
    }
    return 0;
}

static void nc_print_output(int j, const void *data, const int64_t *shape, int rank,
                            uint64_t count) {
    const nc_tensor_info *t = &nc_model.outputs[j];
    char shape_text[NC_ERR_LEN / 2];
    nc_shape_text(shape_text, sizeof shape_text, shape, rank);
    printf("%s: shape %s %s  [", NC_NUM_OUTPUTS == 1 ? "output" : t->name, shape_text,
           nc_dtype_text(t->dtype));
    for (uint64_t k = 0; k < count && k < 6; k++) {
        double v = 0;
        const unsigned char *p = (const unsigned char *)data + k * (uint64_t)nc_itemsize(t->dtype);
        if (t->dtype == NC_F32) { float x; memcpy(&x, p, 4); v = x; }
        else if (t->dtype == NC_F64) memcpy(&v, p, 8);
        else if (t->dtype == NC_F16) { uint16_t h; memcpy(&h, p, 2); v = nc_half_to_double(h); }
        else if (t->dtype == NC_BF16) { uint16_t h; memcpy(&h, p, 2); uint32_t b = (uint32_t)h << 16; float x; memcpy(&x, &b, 4); v = x; }
        else if (t->dtype == NC_I64) { int64_t x; memcpy(&x, p, 8); v = (double)x; }
        else if (t->dtype == NC_I32) { int32_t x; memcpy(&x, p, 4); v = x; }
        else v = *(const int8_t *)p;
        printf("%s%.5g", k ? ", " : "", v);
    }
    printf("%s]\n", count > 6 ? ", ..." : "");
}

int main(int argc, char **argv) {
    nc_args a;
    nc_npy arrays[NC_ARRAY_LEN(NC_NUM_INPUTS)];
    const char *files[NC_ARRAY_LEN(NC_NUM_INPUTS)] = {0};
    int64_t sz[NC_ARRAY_LEN(NC_NUM_SYMBOLS)] = {0};
    int64_t shapes[NC_ARRAY_LEN(NC_NUM_INPUTS + NC_NUM_OUTPUTS)][NC_MAX_RANK];
    uint64_t bytes[NC_ARRAY_LEN(NC_NUM_INPUTS + NC_NUM_OUTPUTS)];
    const void *in[NC_ARRAY_LEN(NC_NUM_INPUTS)];
    size_t in_bytes[NC_ARRAY_LEN(NC_NUM_INPUTS)], out_bytes[NC_ARRAY_LEN(NC_NUM_OUTPUTS)];
    void *out[NC_ARRAY_LEN(NC_NUM_OUTPUTS)];
    char path_buf[4096];
    int rc;
    if (argc > 0 && argv[0] && *argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        nc_prog = slash ? slash + 1 : argv[0];
    }
    if ((rc = nc_parse_args(argc, argv, &a))) return rc;
    const char *weights = a.weights ? a.weights : nc_default_weights(path_buf, sizeof path_buf);
    int threads;
    char err[NC_ERR_LEN];
    if (nc_env_threads(&threads, err)) return nc_die(NC_EXIT_USAGE, "%s", err);
    if (a.threads > 0) threads = (int)a.threads;
    if (a.info) return nc_info(weights, threads);
    if (a.n_outputs && a.n_outputs != NC_NUM_OUTPUTS)
        return nc_die(NC_EXIT_USAGE, "-o is given %d times; the model has %d output%s (give one "
                      "-o per output, in order)", a.n_outputs, NC_NUM_OUTPUTS,
                      NC_NUM_OUTPUTS == 1 ? "" : "s");
    if (!a.n_inputs && !a.bench)
        return nc_die(NC_EXIT_USAGE, "give the model's input: %s x.npy [-o y.npy] (see %s "
                      "--help)", nc_prog, nc_prog);
    memset(arrays, 0, sizeof arrays);
    if (a.n_inputs) {
        if ((rc = nc_order_inputs(&a, files))) return rc;
        for (int i = 0; i < NC_NUM_INPUTS; i++)
            if ((rc = nc_read_npy(files[i], &arrays[i]))) return rc;
        if ((rc = nc_check_dtypes(arrays))) return rc;
        nc_shape given[NC_ARRAY_LEN(NC_NUM_INPUTS)];
        for (int i = 0; i < NC_NUM_INPUTS; i++) {
            given[i].rank = arrays[i].rank;
            given[i].dims = arrays[i].shape;
        }
        if (nc_gen_bind(err, given, sz)) return nc_die(NC_EXIT_DATA, "%s", err);
    } else if ((rc = nc_bench_sizes_of(&a, sz))) {
        return rc;
    }
    nc_ctx *ctx = NC_API(create)(weights);
    if (!ctx) return nc_die(NC_EXIT_DATA, "%s", NC_API(last_error)(NULL));
    if (a.threads >= 0) NC_API(set_threads)(ctx, (int)a.threads);
    NC_API(set_check_finite)(ctx, a.check_finite);
    if (nc_check_symbols(sz, err)) return nc_die(NC_EXIT_DATA, "%s", err);
    for (int k = 0; k < NC_NUM_INPUTS + NC_NUM_OUTPUTS; k++)
        if (nc_tensor_bytes(k, sz, shapes[k], &bytes[k], err))
            return nc_die(NC_EXIT_DATA, "%s", err);
    for (int i = 0; i < NC_NUM_INPUTS; i++) {
        if (a.n_inputs) {
            int same = arrays[i].rank == nc_model.inputs[i].rank;
            for (int d = 0; same && d < arrays[i].rank; d++) same = arrays[i].shape[d] == shapes[i][d];
            if (!same || arrays[i].bytes != bytes[i])
                return nc_die(NC_EXIT_MEMORY, "internal error: input '%s' does not have the "
                              "shape its sizes give", nc_model.inputs[i].name);
        } else {
            /* Bench inputs: floats in [-1, 1) from a fixed xorshift, token ids 0. */
            arrays[i].data = nc_aligned(bytes[i]);
            arrays[i].bytes = bytes[i];
            if (!arrays[i].data) return nc_die(NC_EXIT_MEMORY, "cannot allocate the inputs");
            uint64_t seed = 0x9E3779B97F4A7C15ull + (uint64_t)i;
            int dt = nc_model.inputs[i].dtype;
            for (uint64_t k = 0; dt == NC_F32 && k < bytes[i] / 4; k++) {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
                float x = (float)((double)(seed >> 11) / 4503599627370496.0 - 1.0);
                memcpy(arrays[i].data + 4 * k, &x, 4);
            }
        }
        in[i] = arrays[i].data;
        in_bytes[i] = (size_t)bytes[i];
    }
    for (int j = 0; j < NC_NUM_OUTPUTS; j++) {
        out[j] = nc_aligned(bytes[NC_NUM_INPUTS + j]);
        out_bytes[j] = (size_t)bytes[NC_NUM_INPUTS + j];
        if (!out[j]) return nc_die(NC_EXIT_MEMORY, "cannot allocate the outputs");
    }
    if (NC_API(run)(ctx, sz, in, in_bytes, out, out_bytes))
        return nc_die(NC_EXIT_DATA, "%s", NC_API(last_error)(ctx));
    if (a.bench) {
        double *t = malloc(sizeof(double) * (size_t)a.bench);
        if (!t) return nc_die(NC_EXIT_MEMORY, "cannot allocate the timings");
        for (long r = 0; r < a.bench; r++) {
            double t0 = nc_now();
            NC_API(run)(ctx, sz, in, in_bytes, out, out_bytes);
            t[r] = nc_now() - t0;
        }
        qsort(t, (size_t)a.bench, sizeof(double), nc_cmp_double);
        long n = a.bench;
        double median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
        long p90 = (9 * n + 9) / 10 - 1;
        char sizes_text[256] = "";
        int all[NC_ARRAY_LEN(NC_NUM_SYMBOLS)];
        for (int k = 0; k < NC_NUM_SYMBOLS; k++) all[k] = k;
        nc_sizes_text(sizes_text, sizeof sizes_text, sz, all, NC_NUM_SYMBOLS);
        printf("bench: %ld runs after 1 warm-up%s%s: min %.4g ms, median %.4g ms, p90 %.4g ms "
               "(threads %d; the kernels use 1)\n", n, NC_NUM_SYMBOLS ? ", sizes " : "",
               sizes_text, 1e3 * t[0], 1e3 * median, 1e3 * t[p90], NC_API(threads)(ctx));
        free(t);
    }
    for (int j = 0; j < NC_NUM_OUTPUTS; j++) {
        const nc_tensor_info *t = &nc_model.outputs[j];
        uint64_t count = bytes[NC_NUM_INPUTS + j] / (uint64_t)nc_itemsize(t->dtype);
        if (a.n_outputs) {
            const char *p = a.outputs[j];
            size_t len = strlen(p);
            if (len < 4 || strcmp(p + len - 4, ".npy") != 0) {
                if (len + 5 > sizeof path_buf)
                    return nc_die(NC_EXIT_USAGE, "output path too long: %s", p);
                snprintf(path_buf, sizeof path_buf, "%s.npy", p);
                p = path_buf;
            }
            if ((rc = nc_write_npy(p, t->dtype, shapes[NC_NUM_INPUTS + j], t->rank, out[j],
                                   count)))
                return rc;
            if (!a.quiet) printf("wrote %s\n", p);
        } else if (!a.quiet && !a.bench) {
            nc_print_output(j, out[j], shapes[NC_NUM_INPUTS + j], t->rank, count);
        }
    }
    for (int i = 0; i < NC_NUM_INPUTS; i++) free(arrays[i].data);
    for (int j = 0; j < NC_NUM_OUTPUTS; j++) free(out[j]);
    NC_API(destroy)(ctx);
    return NC_EXIT_OK;
}
