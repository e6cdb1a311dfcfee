/* Runs a neuralc model through its C ABI (shared library or object), for the edge tests:
 *
 *   driver [--unaligned] SIZE... -- IN.bin... -- OUT.bin...
 *
 * Inputs are raw bytes in the model's dtypes; outputs are written raw. Compiled once per model
 * with -DNCP=<prefix> -DNC_HEADER='"<model>.h"'. --unaligned offsets every buffer by 4 bytes
 * from a 64-byte boundary, to exercise the runtime's aligned copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include NC_HEADER

#define CAT3_(a, b, c) a##b##c
#define CAT3(a, b, c) CAT3_(a, b, c)
#define F(n) CAT3(NCP, _, n)

static unsigned char *read_file(const char *path, size_t *n, size_t shift) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *raw = aligned_alloc(64, (*n + shift + 64) / 64 * 64);
    if (!raw || fread(raw + shift, 1, *n, f) != *n) return NULL;
    fclose(f);
    return raw;
}

int main(int argc, char **argv) {
    const nc_model_info *info = F(info)();
    int k = 1, shift = 0;
    if (k < argc && strcmp(argv[k], "--unaligned") == 0) shift = 4, k++;
    int64_t sizes[64];
    int ns = 0;
    for (; k < argc && strcmp(argv[k], "--") != 0; k++) sizes[ns++] = atoll(argv[k]);
    if (ns != info->num_symbols || k + 1 + info->num_inputs + 1 + info->num_outputs != argc) {
        fprintf(stderr, "usage: driver SIZE... -- IN... -- OUT...\n");
        return 2;
    }
    k++;
    F(ctx) *m = F(create)(NULL);
    if (!m) {
        fprintf(stderr, "create: %s\n", F(last_error)(NULL));
        return 1;
    }
    const void *in[64];
    size_t in_bytes[64], out_bytes[64];
    void *out[64];
    unsigned char *raw_in[64], *raw_out[64];
    for (int i = 0; i < info->num_inputs; i++, k++) {
        raw_in[i] = read_file(argv[k], &in_bytes[i], (size_t)shift);
        if (!raw_in[i]) return fprintf(stderr, "cannot read %s\n", argv[k]), 2;
        in[i] = raw_in[i] + shift;
    }
    k++;
    for (int j = 0; j < info->num_outputs; j++) {
        int64_t shape[32], n = 1;
        if (F(shape)(m, sizes, info->num_inputs + j, shape)) {
            fprintf(stderr, "shape: %s\n", F(last_error)(m));
            return 1;
        }
        for (int a = 0; a < info->outputs[j].rank; a++) n *= shape[a];
        out_bytes[j] = (size_t)n * (info->outputs[j].dtype == NC_F32 ? 4 : 8);
        raw_out[j] = aligned_alloc(64, (out_bytes[j] + (size_t)shift + 64) / 64 * 64);
        out[j] = raw_out[j] + shift;
    }
    if (F(run)(m, sizes, in, in_bytes, out, out_bytes)) {
        fprintf(stderr, "run: %s\n", F(last_error)(m));
        return 1;
    }
    for (int j = 0; j < info->num_outputs; j++, k++) {
        FILE *f = fopen(argv[k], "wb");
        if (!f || fwrite(out[j], 1, out_bytes[j], f) != out_bytes[j] || fclose(f)) return 2;
    }
    for (int i = 0; i < info->num_inputs; i++) free(raw_in[i]);
    for (int j = 0; j < info->num_outputs; j++) free(raw_out[j]);
    F(destroy)(m);
    return 0;
}
