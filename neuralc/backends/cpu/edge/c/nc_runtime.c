/* neuralc edge runtime: the C ABI of one compiled model (see the generated model.h).
 *
 * Included at the end of the generated model.c, after the model's tables and check
 * functions, so that everything but the NC_PREFIX_* functions stays static. It needs only the
 * C library: malloc/aligned_alloc/free, memcpy/memset, stdio for an external weights file,
 * snprintf for messages, getenv and sysconf for the thread count.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NC_ARRAY_LEN(n) ((n) > 0 ? (n) : 1)

/* -- errors: one line each ----------------------------------------------------------------- */

static _Thread_local char nc_create_error[NC_ERR_LEN];

/* Control characters (a newline in a file name) would break the one-line promise. */
static void nc_oneline(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

static int nc_vfail(char *err, const char *fmt, va_list ap) {
    vsnprintf(err, NC_ERR_LEN, fmt, ap);
    nc_oneline(err);
    return -1;
}

static int nc_fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nc_vfail(err, fmt, ap);
    va_end(ap);
    return -1;
}

/* "(2, 28, 28, 1)", "(5,)", "()": numpy's and neuralc's shape text. */
static void nc_shape_text(char *buf, size_t n, const int64_t *dims, int rank) {
    size_t used = 0;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "(");
    for (int k = 0; k < rank && used < n; k++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", k ? ", " : "",
                                 (long long)dims[k]);
    if (used < n) snprintf(buf + used, n - used, rank == 1 ? ",)" : ")");
}

/* neuralc.runtime.signature: "input 'x' has shape (..), expected (..): <why>". */
static int nc_bind_fail(char *err, const nc_shape *in, int i, const char *fmt, ...) {
    char why[NC_ERR_LEN / 2], shape[NC_ERR_LEN / 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    nc_shape_text(shape, sizeof shape, in[i].dims, in[i].rank);
    return nc_fail(err, "input '%s' has shape %s, expected %s: %s", nc_model.inputs[i].name,
                   shape, nc_model.inputs[i].shape, why);
}

static int nc_ev_fail(char *err, const nc_ev *ev) {
    if (ev->divzero)
        return nc_fail(err, "with these inputs a size of the model divides by zero");
    return nc_fail(err, "these inputs are too large for this model (its sizes pass 64-bit "
                        "arithmetic)");
}

/* "batch=2, seq=7" for the symbols of a failing check. */
static void nc_sizes_text(char *buf, size_t n, const int64_t *sz, const int *syms, int k) {
    size_t used = 0;
    buf[0] = 0;
    for (int j = 0; j < k && used < n; j++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%lld", j ? ", " : "",
                                 nc_model.symbols[syms[j]].name, (long long)sz[syms[j]]);
}

/* -- memory -------------------------------------------------------------------------------- */

static void *nc_aligned(uint64_t bytes) {
    uint64_t n = bytes < NC_ALIGN ? NC_ALIGN : (bytes + NC_ALIGN - 1) / NC_ALIGN * NC_ALIGN;
    if (n > (uint64_t)SIZE_MAX || n < bytes) return NULL;
    void *p = aligned_alloc(NC_ALIGN, (size_t)n);
    if (p) memset(p, 0, (size_t)n);
    return p;
}

static int nc_itemsize(int dtype) {
    switch (dtype) {
    case NC_F32: case NC_I32: return 4;
    case NC_F16: case NC_BF16: return 2;
    case NC_F64: case NC_I64: return 8;
    default: return 1;
    }
}

/* numpy's name of an element type, for messages. */
NC_MAYBE_UNUSED static const char *nc_np_name(int dtype) {
    switch (dtype) {
    case NC_F32: return "float32";
    case NC_F16: return "float16";
    case NC_BF16: return "float32"; /* numpy has no bfloat16 */
    case NC_F64: return "float64";
    case NC_I64: return "int64";
    case NC_I32: return "int32";
    case NC_I8: return "int8";
    default: return "bool";
    }
}

/* -- SHA-256 (the weights digest of --info) ------------------------------------------------ */

typedef struct nc_sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} nc_sha256;

static const uint32_t nc_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define NC_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void nc_sha_block(nc_sha256 *s, const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = NC_ROR(w[i - 15], 7) ^ NC_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = NC_ROR(w[i - 2], 17) ^ NC_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (NC_ROR(e, 6) ^ NC_ROR(e, 11) ^ NC_ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                      nc_sha_k[i] + w[i];
        uint32_t t2 = (NC_ROR(a, 2) ^ NC_ROR(a, 13) ^ NC_ROR(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void nc_sha_init(nc_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->fill = 0;
}

static void nc_sha_update(nc_sha256 *s, const unsigned char *p, size_t n) {
    s->len += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->buf + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            nc_sha_block(s, s->buf);
            s->fill = 0;
        }
    }
}

static void nc_sha_hex(nc_sha256 *s, char out[65]) {
    uint64_t bits = s->len * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    nc_sha_update(s, &pad, 1);
    while (s->fill != 56) nc_sha_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    nc_sha_update(s, len, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* The SHA-256 of a file, hex; -1 with err set when it cannot be read. */
NC_MAYBE_UNUSED static int nc_file_sha256(const char *path, char out[65], char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return nc_fail(err, "cannot read %s: %s", path, strerror(errno));
    nc_sha256 s;
    size_t n, cap = 1 << 16;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return nc_fail(err, "cannot allocate a read buffer");
    }
    nc_sha_init(&s);
    while ((n = fread(buf, 1, cap, f)) > 0) nc_sha_update(&s, buf, n);
    int bad = ferror(f);
    free(buf);
    fclose(f);
    if (bad) return nc_fail(err, "cannot read %s", path);
    nc_sha_hex(&s, out);
    return 0;
}

/* -- a strict reader of safetensors headers (JSON) ----------------------------------------- */

typedef struct nc_json {
    const unsigned char *p, *end, *start;
    char *err;
    const char *path;
} nc_json;

static int nc_json_fail(nc_json *j, const char *what) {
    return nc_fail(j->err, "weights file %s: the safetensors header is not valid JSON (%s "
                           "at byte %lld of the header)", j->path, what,
                   (long long)(j->p - j->start));
}

static void nc_json_ws(nc_json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int nc_json_expect(nc_json *j, char c) {
    nc_json_ws(j);
    if (j->p >= j->end || *j->p != (unsigned char)c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return nc_json_fail(j, what);
    }
    j->p++;
    return 0;
}

/* Whether the next non-blank character is c (consumed when it is). */
static int nc_json_take(nc_json *j, char c) {
    nc_json_ws(j);
    if (j->p < j->end && *j->p == (unsigned char)c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int nc_hex4(const unsigned char *p, const unsigned char *end, unsigned *v) {
    *v = 0;
    if (end - p < 4) return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

/* A JSON string, unescaped into out (NUL-terminated; too long is an error). */
static int nc_json_string(nc_json *j, char *out, size_t cap) {
    size_t n = 0;
    if (nc_json_expect(j, '"')) return -1;
    while (1) {
        if (j->p >= j->end) return nc_json_fail(j, "unterminated string");
        unsigned c = *j->p++;
        unsigned char enc[4];
        size_t k = 1;
        if (c == '"') break;
        if (c < 0x20) return nc_json_fail(j, "control character in a string");
        enc[0] = (unsigned char)c;
        if (c == '\\') {
            if (j->p >= j->end) return nc_json_fail(j, "unterminated string");
            c = *j->p++;
            switch (c) {
            case '"': case '\\': case '/': enc[0] = (unsigned char)c; break;
            case 'b': enc[0] = '\b'; break;
            case 'f': enc[0] = '\f'; break;
            case 'n': enc[0] = '\n'; break;
            case 'r': enc[0] = '\r'; break;
            case 't': enc[0] = '\t'; break;
            case 'u': {
                unsigned u;
                if (nc_hex4(j->p, j->end, &u)) return nc_json_fail(j, "bad \\u escape");
                j->p += 4;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                        nc_hex4(j->p + 2, j->end, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return nc_json_fail(j, "unpaired surrogate");
                    j->p += 6;
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return nc_json_fail(j, "unpaired surrogate");
                }
                if (u == 0) return nc_json_fail(j, "NUL in a string");
                if (u < 0x80) { enc[0] = (unsigned char)u; k = 1; }
                else if (u < 0x800) {
                    enc[0] = (unsigned char)(0xC0 | u >> 6);
                    enc[1] = (unsigned char)(0x80 | (u & 0x3F)); k = 2;
                } else if (u < 0x10000) {
                    enc[0] = (unsigned char)(0xE0 | u >> 12);
                    enc[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
                    enc[2] = (unsigned char)(0x80 | (u & 0x3F)); k = 3;
                } else {
                    enc[0] = (unsigned char)(0xF0 | u >> 18);
                    enc[1] = (unsigned char)(0x80 | ((u >> 12) & 0x3F));
                    enc[2] = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
                    enc[3] = (unsigned char)(0x80 | (u & 0x3F)); k = 4;
                }
                break;
            }
            default: return nc_json_fail(j, "bad escape");
            }
        }
        if (n + k >= cap) return nc_json_fail(j, "string too long");
        memcpy(out + n, enc, k);
        n += k;
    }
    out[n] = 0;
    return 0;
}

/* A non-negative integer without sign, fraction or exponent (sizes and offsets). */
static int nc_json_uint(nc_json *j, uint64_t *v) {
    nc_json_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return nc_json_fail(j, "expected a non-negative integer");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return nc_json_fail(j, "leading zero");
    *v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = *j->p++ - '0';
        if (*v > (UINT64_MAX - d) / 10) return nc_json_fail(j, "integer too large");
        *v = *v * 10 + d;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return nc_json_fail(j, "expected an integer");
    return 0;
}

/* A JSON array of non-negative integers, at most cap of them. */
static int nc_json_uints(nc_json *j, uint64_t *v, int cap, int *n) {
    *n = 0;
    if (nc_json_expect(j, '[')) return -1;
    if (nc_json_take(j, ']')) return 0;
    do {
        if (*n >= cap) return nc_json_fail(j, "array too long");
        if (nc_json_uint(j, &v[(*n)++])) return -1;
    } while (nc_json_take(j, ','));
    return nc_json_expect(j, ']');
}

/* -- external weights: a safetensors file, checked against the model --------------------- */

typedef struct nc_st_entry {
    int found;
    uint64_t begin, end;
} nc_st_entry;

static int nc_st_tensor(nc_json *j, const char *name, nc_st_entry *entries) {
    int w = -1;
    for (int k = 0; k < NC_NUM_WEIGHTS; k++)
        if (strcmp(nc_weights[k].name, name) == 0) w = k;
    if (w < 0)
        return nc_fail(j->err, "weights file %s holds tensor '%s', which this model does not "
                               "use", j->path, name);
    if (entries[w].found)
        return nc_fail(j->err, "weights file %s holds tensor '%s' twice", j->path, name);
    const nc_weight_desc *d = &nc_weights[w];
    char key[32], dtype[32];
    uint64_t shape[NC_MAX_RANK + 1], offsets[3];
    int rank = -1, n_off = -1, have_dtype = 0;
    if (nc_json_expect(j, '{')) return -1;
    if (!nc_json_take(j, '}')) {
        do {
            if (nc_json_string(j, key, sizeof key) || nc_json_expect(j, ':')) return -1;
            if (strcmp(key, "dtype") == 0 && !have_dtype) {
                if (nc_json_string(j, dtype, sizeof dtype)) return -1;
                have_dtype = 1;
            } else if (strcmp(key, "shape") == 0 && rank < 0) {
                if (nc_json_uints(j, shape, NC_MAX_RANK + 1, &rank)) return -1;
            } else if (strcmp(key, "data_offsets") == 0 && n_off < 0) {
                if (nc_json_uints(j, offsets, 3, &n_off)) return -1;
            } else {
                return nc_fail(j->err, "weights file %s: tensor '%s' has an unknown or "
                                       "repeated field '%s'", j->path, name, key);
            }
        } while (nc_json_take(j, ','));
        if (nc_json_expect(j, '}')) return -1;
    }
    if (!have_dtype || rank < 0 || n_off < 0)
        return nc_fail(j->err, "weights file %s: tensor '%s' lacks its dtype, shape or "
                               "data_offsets", j->path, name);
    if (strcmp(dtype, d->st_dtype) != 0)
        return nc_fail(j->err, "weights file %s: tensor '%s' is %s, the model needs %s",
                       j->path, name, dtype, d->st_dtype);
    int same = rank == d->rank;
    for (int k = 0; same && k < rank; k++) same = shape[k] == (uint64_t)d->shape[k];
    if (!same) {
        char want[256];
        nc_shape_text(want, sizeof want, d->shape, d->rank);
        return nc_fail(j->err, "weights file %s: tensor '%s' has another shape than the "
                               "model's %s", j->path, name, want);
    }
    if (n_off != 2 || offsets[1] < offsets[0] || offsets[1] - offsets[0] != d->bytes)
        return nc_fail(j->err, "weights file %s: tensor '%s' has data_offsets that do not "
                               "span its %llu bytes", j->path, name,
                       (unsigned long long)d->bytes);
    entries[w].found = 1;
    entries[w].begin = offsets[0];
    entries[w].end = offsets[1];
    return 0;
}

static int nc_st_metadata(nc_json *j) {
    char text[1024];
    if (nc_json_expect(j, '{')) return -1;
    if (nc_json_take(j, '}')) return 0;
    do {
        if (nc_json_string(j, text, sizeof text) || nc_json_expect(j, ':') ||
            nc_json_string(j, text, sizeof text))
            return -1;
    } while (nc_json_take(j, ','));
    return nc_json_expect(j, '}');
}

/* Reads every weight of the table from a safetensors file into one aligned block laid out as
 * the embedded blob is; checks names, dtypes, shapes and offsets first. */
static int nc_load_safetensors(const char *path, unsigned char **mem, uint64_t blob_bytes,
                               char *err) {
    FILE *f = fopen(path, "rb");
    unsigned char *header = NULL;
    nc_st_entry entries[NC_ARRAY_LEN(NC_NUM_WEIGHTS)];
    int rc = -1;
    *mem = NULL;
    memset(entries, 0, sizeof entries);
    if (!f) return nc_fail(err, "cannot read weights file %s: %s", path, strerror(errno));
    unsigned char len8[8];
    uint64_t n = 0, size;
    if (fseeko(f, 0, SEEK_END) || (size = (uint64_t)ftello(f), fseeko(f, 0, SEEK_SET))) {
        nc_fail(err, "cannot read weights file %s: %s", path, strerror(errno));
        goto done;
    }
    if (size < 8 || fread(len8, 1, 8, f) != 8) {
        nc_fail(err, "weights file %s is not a safetensors file (shorter than 8 bytes)", path);
        goto done;
    }
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n < 2 || n > 100000000 || n > size - 8) {
        nc_fail(err, "weights file %s is not a safetensors file (its header length %llu does "
                     "not fit the file's %llu bytes)", path, (unsigned long long)n,
                (unsigned long long)size);
        goto done;
    }
    header = malloc((size_t)n);
    if (!header || fread(header, 1, (size_t)n, f) != n) {
        nc_fail(err, "cannot read weights file %s", path);
        goto done;
    }
    nc_json j = {header, header + n, header, err, path};
    char name[1024];
    if (nc_json_expect(&j, '{')) goto done;
    if (!nc_json_take(&j, '}')) {
        do {
            if (nc_json_string(&j, name, sizeof name) || nc_json_expect(&j, ':')) goto done;
            if (strcmp(name, "__metadata__") == 0 ? nc_st_metadata(&j)
                                                  : nc_st_tensor(&j, name, entries))
                goto done;
        } while (nc_json_take(&j, ','));
        if (nc_json_expect(&j, '}')) goto done;
    }
    nc_json_ws(&j);
    if (j.p != j.end) {
        nc_json_fail(&j, "text after the header");
        goto done;
    }
    uint64_t data = size - 8 - n;
    for (int k = 0; k < NC_NUM_WEIGHTS; k++) {
        if (!entries[k].found) {
            nc_fail(err, "weights file %s lacks tensor '%s'", path, nc_weights[k].name);
            goto done;
        }
        if (entries[k].end > data) {
            nc_fail(err, "weights file %s is truncated: tensor '%s' ends past the file's end",
                    path, nc_weights[k].name);
            goto done;
        }
    }
    *mem = nc_aligned(blob_bytes);
    if (!*mem) {
        nc_fail(err, "cannot allocate %llu bytes for the weights",
                (unsigned long long)blob_bytes);
        goto done;
    }
    for (int k = 0; k < NC_NUM_WEIGHTS; k++) {
        const nc_weight_desc *d = &nc_weights[k];
        if (d->bytes == 0) continue;
        if (fseeko(f, (off_t)(8 + n + entries[k].begin), SEEK_SET) ||
            fread(*mem + d->offset, 1, (size_t)d->bytes, f) != d->bytes) {
            nc_fail(err, "cannot read tensor '%s' from weights file %s", d->name, path);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc && *mem) {
        free(*mem);
        *mem = NULL;
    }
    free(header);
    fclose(f);
    return rc;
}

/* -- contexts ------------------------------------------------------------------------------ */

#if !NC_EXTERNAL_WEIGHTS
extern const unsigned char NC_API(_weights)[] NC_HIDDEN;
#endif
extern void NC_API(_run)(void **in, void **out, void **init, void **w, void *arena,
                         const int64_t *sizes) NC_HIDDEN;
#if NC_HAS_INIT
extern void NC_API(_init)(void **init, void **w, void *arena) NC_HIDDEN;
#endif


struct NC_API(ctx) {
    char err[NC_ERR_LEN];
    unsigned char *weights_mem; /* external weights, or NULL */
    void *wtab[NC_ARRAY_LEN(NC_NUM_WEIGHTS)];
    void *init[NC_ARRAY_LEN(NC_NUM_INIT)];
    unsigned char *arena;
    uint64_t arena_cap;
    int threads, check_finite;
};
typedef struct NC_API(ctx) nc_ctx;

/* The pool size when none is asked for: one thread per online CPU. */
static int nc_machine_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* NEURALC_THREADS: unset or 0 -> the machine's; else 1..1024. */
static int nc_env_threads(int *threads, char *err) {
    const char *s = getenv("NEURALC_THREADS");
    *threads = nc_machine_threads();
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 1024)
        return nc_fail(err, "NEURALC_THREADS must be a number of threads from 0 (one per CPU) "
                            "to 1024, got '%s'", s);
    if (v > 0) *threads = (int)v;
    return 0;
}

NC_EXPORT void NC_API(destroy)(nc_ctx *ctx) {
    if (!ctx) return;

    for (int k = 0; k < NC_NUM_INIT; k++) free(ctx->init[k]);
    free(ctx->weights_mem);
    free(ctx->arena);
    free(ctx);
}

NC_EXPORT nc_ctx *NC_API(create)(const char *weights_path) {
    nc_ctx *ctx = calloc(1, sizeof *ctx);
    char *err = nc_create_error;
    if (!ctx) {
        nc_fail(err, "cannot allocate a context");
        return NULL;
    }
    if (nc_env_threads(&ctx->threads, err)) goto fail;
    const unsigned char *base = NULL;
    if (weights_path) {
        if (nc_load_safetensors(weights_path, &ctx->weights_mem, NC_WEIGHTS_BLOB_BYTES, err))
            goto fail;
        base = ctx->weights_mem;
    } else {
#if NC_EXTERNAL_WEIGHTS
        nc_fail(err, "this model was built with --external-weights: give the path of its "
                     "weights file (%s)", NC_WEIGHTS_FILE);
        goto fail;
#else
        base = NC_API(_weights);
#endif
    }
    for (int k = 0; k < NC_NUM_WEIGHTS; k++)
        ctx->wtab[k] = (void *)(uintptr_t)(base + nc_weights[k].offset);
    for (int k = 0; k < NC_NUM_INIT; k++) {
        ctx->init[k] = nc_aligned(nc_init_bytes[k]);
        if (!ctx->init[k]) {
            nc_fail(err, "cannot allocate %llu bytes of load-time buffers",
                    (unsigned long long)nc_init_bytes[k]);
            goto fail;
        }
    }
#if NC_HAS_INIT
    {
        void *arena = nc_aligned(NC_INIT_ARENA_BYTES);
        if (!arena) {
            nc_fail(err, "cannot allocate %llu bytes for the load-time work",
                    (unsigned long long)NC_INIT_ARENA_BYTES);
            goto fail;
        }
        NC_API(_init)(ctx->init, ctx->wtab, arena);
        free(arena);
    }
#endif
    return ctx;
fail:
    NC_API(destroy)(ctx);
    return NULL;
}

NC_EXPORT const char *NC_API(last_error)(const nc_ctx *ctx) {
    return ctx ? ctx->err : nc_create_error;
}

NC_EXPORT const nc_model_info *NC_API(info)(void) { return &nc_model; }

NC_EXPORT int NC_API(set_threads)(nc_ctx *ctx, int threads) {
    if (!ctx) return -1;
    if (threads < 0 || threads > 1024)
        return nc_fail(ctx->err, "threads must be from 0 (one per CPU) to 1024, got %d",
                       threads);
    ctx->threads = threads == 0 ? nc_machine_threads() : threads;
    return 0;
}

NC_EXPORT int NC_API(threads)(const nc_ctx *ctx) { return ctx ? ctx->threads : -1; }

NC_EXPORT int NC_API(set_check_finite)(nc_ctx *ctx, int on) {
    if (!ctx) return -1;
    ctx->check_finite = on != 0;
    return 0;
}

/* -- sizes, shapes and checks -------------------------------------------------------------- */

/* Sizes given directly (the ABI): each within its dims range and on its step. */
static int nc_check_symbols(const int64_t *sz, char *err) {
    for (int k = 0; k < NC_NUM_SYMBOLS; k++) {
        const nc_symbol_info *s = &nc_model.symbols[k];
        char lo[24] = "", hi[24] = "";
        if (s->min >= 0) snprintf(lo, sizeof lo, "%lld", (long long)s->min);
        if (s->max >= 0) snprintf(hi, sizeof hi, "%lld", (long long)s->max);
        if (sz[k] < 0 || (s->min >= 0 && sz[k] < s->min) || (s->max >= 0 && sz[k] > s->max))
            return nc_fail(err, "size %s=%lld is outside the range of %s (%s..%s)", s->name,
                           (long long)sz[k], s->name, lo, hi);
        if (s->step > 1 && sz[k] % s->step)
            return nc_fail(err, "size %s=%lld is not a multiple of %lld (dims { %s: %s..%s "
                                "step %lld })", s->name, (long long)sz[k],
                           (long long)s->step, s->name, lo, hi, (long long)s->step);
    }
    return 0;
}

static const nc_tensor_info *nc_tensor(int k) {
    return k < NC_NUM_INPUTS ? &nc_model.inputs[k] : &nc_model.outputs[k - NC_NUM_INPUTS];
}

/* The shape and byte count of tensor k (inputs, then outputs) at checked sizes. */
static int nc_tensor_bytes(int k, const int64_t *sz, int64_t *shape, uint64_t *bytes,
                           char *err) {
    const nc_tensor_info *t = nc_tensor(k);
    nc_ev ev = {0, 0};
    nc_gen_shape(k, sz, shape, &ev);
    int64_t n = nc_itemsize(t->dtype);
    for (int a = 0; a < t->rank; a++) {
        if (shape[a] < 0 && !ev.overflow && !ev.divzero)
            return nc_fail(err, "with these sizes %s '%s' would have %lld elements on axis "
                                "%d", k < NC_NUM_INPUTS ? "input" : "output", t->name,
                           (long long)shape[a], a);
        n = nc_mul(&ev, n, shape[a]);
    }
    if (ev.overflow || ev.divzero || (uint64_t)n > (uint64_t)SIZE_MAX) return nc_ev_fail(err, &ev);
    *bytes = (uint64_t)n;
    return 0;
}

/* Token ids of the inputs Embeddings read: in [0, rows), as neuralc.runtime.sizes says. */
static int nc_check_indices(const void *const *in, const uint64_t *in_bytes, char *err) {
    int64_t lo = 0, hi = 0;
    int last = -1;
    for (int c = 0; c < NC_NUM_INDEX_CHECKS; c++) {
        const nc_index_check *ic = &nc_index_checks[c];
        const nc_tensor_info *t = &nc_model.inputs[ic->input];
        uint64_t n = in_bytes[ic->input] / (uint64_t)nc_itemsize(t->dtype);
        if (n == 0) continue;
        if (ic->input != last) {
            last = ic->input;
            const unsigned char *p = in[ic->input];
            for (uint64_t i = 0; i < n; i++) {
                int64_t v;
                if (t->dtype == NC_I64) {
                    memcpy(&v, p + 8 * i, 8);
                } else if (t->dtype == NC_I32) {
                    int32_t w;
                    memcpy(&w, p + 4 * i, 4);
                    v = w;
                } else {
                    v = (int8_t)p[i];
                }
                if (i == 0 || v < lo) lo = v;
                if (i == 0 || v > hi) hi = v;
            }
        }
        if (lo < 0 || hi >= ic->rows)
            return nc_fail(err, "input '%s' holds the token index %lld, but %s has %lld rows "
                                "(indices 0 to %lld)", t->name, (long long)(lo < 0 ? lo : hi),
                           ic->where, (long long)ic->rows, (long long)(ic->rows - 1));
    }
    return 0;
}

/* NaN or infinity in a float input (only when asked: set_check_finite). */
static int nc_check_finite(const void *const *in, const uint64_t *in_bytes, char *err) {
    for (int i = 0; i < NC_NUM_INPUTS; i++) {
        const nc_tensor_info *t = &nc_model.inputs[i];
        uint64_t n = in_bytes[i] / (uint64_t)nc_itemsize(t->dtype);
        for (uint64_t k = 0; k < n; k++) {
            int bad = 0;
            if (t->dtype == NC_F32) {
                uint32_t b;
                memcpy(&b, (const unsigned char *)in[i] + 4 * k, 4);
                bad = (b & 0x7f800000u) == 0x7f800000u;
            } else if (t->dtype == NC_F64) {
                uint64_t b;
                memcpy(&b, (const unsigned char *)in[i] + 8 * k, 8);
                bad = (b & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
            } else if (t->dtype == NC_F16 || t->dtype == NC_BF16) {
                uint16_t b;
                memcpy(&b, (const unsigned char *)in[i] + 2 * k, 2);
                bad = t->dtype == NC_F16 ? (b & 0x7c00u) == 0x7c00u : (b & 0x7f80u) == 0x7f80u;
            }
            if (bad)
                return nc_fail(err, "input '%s' holds a non-finite value (NaN or infinity) at "
                                    "flat index %llu", t->name, (unsigned long long)k);
        }
    }
    return 0;
}

/* Every check of a run, in neuralc's order: the sizes of every layer, token ids, dims
 * constraints. in_bytes are the checked byte counts of the inputs. */
static int nc_check_run(const nc_ctx *ctx, const int64_t *sz, const void *const *in,
                        const uint64_t *in_bytes, char *err) {
    if (nc_gen_check_sizes(err, sz)) return -1;
    if (nc_check_indices(in, in_bytes, err)) return -1;
    if (nc_gen_check_constraints(err, sz)) return -1;
    if (ctx->check_finite && nc_check_finite(in, in_bytes, err)) return -1;
    return 0;
}

NC_EXPORT int NC_API(shape)(nc_ctx *ctx, const int64_t *sizes, int k, int64_t *shape) {
    uint64_t bytes;
    int64_t tmp[NC_MAX_RANK];
    if (!ctx) return -1;
    if (k < 0 || k >= NC_NUM_INPUTS + NC_NUM_OUTPUTS)
        return nc_fail(ctx->err, "tensor %d does not exist (the model has %d inputs and %d "
                                 "outputs)", k, NC_NUM_INPUTS, NC_NUM_OUTPUTS);
    if ((NC_NUM_SYMBOLS > 0 && !sizes) || !shape)
        return nc_fail(ctx->err, "shape: sizes and shape must not be NULL");
    if (nc_check_symbols(sizes, ctx->err) ||
        nc_tensor_bytes(k, sizes, tmp, &bytes, ctx->err))
        return -1;
    memcpy(shape, tmp, sizeof(int64_t) * (size_t)nc_tensor(k)->rank);
    return 0;
}

NC_EXPORT int NC_API(bind)(nc_ctx *ctx, const int64_t *const *shapes, const int *ranks,
                           int64_t *sizes) {
    nc_shape in[NC_ARRAY_LEN(NC_NUM_INPUTS)];
    int64_t sz[NC_ARRAY_LEN(NC_NUM_SYMBOLS)] = {0};
    if (!ctx) return -1;
    if (!shapes || !ranks || (NC_NUM_SYMBOLS > 0 && !sizes))
        return nc_fail(ctx->err, "bind: shapes, ranks and sizes must not be NULL");
    for (int i = 0; i < NC_NUM_INPUTS; i++) {
        if (ranks[i] < 0 || ranks[i] > NC_MAX_RANK || (!shapes[i] && ranks[i] > 0))
            return nc_fail(ctx->err, "input '%s': rank %d is not one neuralc takes",
                           nc_model.inputs[i].name, ranks[i]);
        in[i].rank = ranks[i];
        in[i].dims = shapes[i];
    }
    if (nc_gen_bind(ctx->err, in, sz)) return -1;
    if (NC_NUM_SYMBOLS) memcpy(sizes, sz, sizeof(int64_t) * NC_NUM_SYMBOLS);
    return 0;
}

/* The arena for these sizes, grown when needed (kept between runs). */
static int nc_arena(nc_ctx *ctx, const int64_t *sz) {
    nc_ev ev = {0, 0};
    int64_t need = nc_gen_arena(sz, &ev);
    if (ev.overflow || ev.divzero) return nc_ev_fail(ctx->err, &ev);
    if (need < 0) need = 0;
    if (ctx->arena && (uint64_t)need <= ctx->arena_cap) return 0;
    free(ctx->arena);
    ctx->arena = nc_aligned((uint64_t)need);
    ctx->arena_cap = ctx->arena ? (uint64_t)need : 0;
    if (!ctx->arena)
        return nc_fail(ctx->err, "cannot allocate the %lld bytes of scratch memory these "
                                 "sizes need", (long long)need);
    return 0;
}

NC_EXPORT int NC_API(run)(nc_ctx *ctx, const int64_t *sizes, const void *const *inputs,
                          const size_t *input_bytes, void *const *outputs,
                          const size_t *output_bytes) {
    int64_t shape[NC_MAX_RANK];
    uint64_t need[NC_ARRAY_LEN(NC_NUM_INPUTS + NC_NUM_OUTPUTS)];
    void *in[NC_ARRAY_LEN(NC_NUM_INPUTS)], *out[NC_ARRAY_LEN(NC_NUM_OUTPUTS)];
    void *staged[NC_ARRAY_LEN(NC_NUM_INPUTS + NC_NUM_OUTPUTS)];
    int64_t no_sizes = 0;
    int rc = -1;
    if (!ctx) return -1;
    if ((NC_NUM_SYMBOLS > 0 && !sizes) || (NC_NUM_INPUTS > 0 && !inputs) || !input_bytes ||
        !outputs || !output_bytes)
        return nc_fail(ctx->err, "run: sizes, inputs, outputs and their byte counts must not "
                                 "be NULL");
    if (nc_check_symbols(sizes, ctx->err)) return -1;
    for (int k = 0; k < NC_NUM_INPUTS + NC_NUM_OUTPUTS; k++) {
        int is_in = k < NC_NUM_INPUTS;
        const void *p = is_in ? inputs[k] : outputs[k - NC_NUM_INPUTS];
        size_t given = is_in ? input_bytes[k] : output_bytes[k - NC_NUM_INPUTS];
        if (nc_tensor_bytes(k, sizes, shape, &need[k], ctx->err)) return -1;
        if (!p && need[k])
            return nc_fail(ctx->err, "%s '%s' is NULL", is_in ? "input" : "output",
                           nc_tensor(k)->name);
        if ((uint64_t)given != need[k])
            return nc_fail(ctx->err, "%s '%s' has %llu bytes, these sizes need %llu",
                           is_in ? "input" : "output", nc_tensor(k)->name,
                           (unsigned long long)given, (unsigned long long)need[k]);
    }
    if (nc_check_run(ctx, sizes, inputs, need, ctx->err)) return -1;
    if (nc_arena(ctx, sizes)) return -1;
    /* The kernels want 64-byte aligned buffers: others go through an aligned copy. */
    memset(staged, 0, sizeof staged);
    for (int k = 0; k < NC_NUM_INPUTS + NC_NUM_OUTPUTS; k++) {
        int is_in = k < NC_NUM_INPUTS;
        void *p = is_in ? (void *)(uintptr_t)inputs[k] : outputs[k - NC_NUM_INPUTS];
        if (((uintptr_t)p % NC_ALIGN) != 0 || !p) {
            staged[k] = nc_aligned(need[k]);
            if (!staged[k]) {
                nc_fail(ctx->err, "cannot allocate %llu bytes", (unsigned long long)need[k]);
                goto done;
            }
            if (is_in && need[k]) memcpy(staged[k], p, (size_t)need[k]);
            p = staged[k];
        }
        if (is_in) in[k] = p;
        else out[k - NC_NUM_INPUTS] = p;
    }
    NC_API(_run)(in, out, ctx->init, ctx->wtab, ctx->arena,
                 NC_NUM_SYMBOLS ? sizes : &no_sizes);

    for (int j = 0; j < NC_NUM_OUTPUTS; j++)
        if (staged[NC_NUM_INPUTS + j] && need[NC_NUM_INPUTS + j])
            memcpy(outputs[j], out[j], (size_t)need[NC_NUM_INPUTS + j]);
    rc = 0;
done:
    for (int k = 0; k < NC_NUM_INPUTS + NC_NUM_OUTPUTS; k++) free(staged[k]);
    return rc;
}
