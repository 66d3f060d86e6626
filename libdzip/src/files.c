/* Files a .dzip carries beside its tensors (version 6: a tokenizer and the like; docs/FORMAT.md,
 * "Files"), checked on open as deepzip's DzipReader.file_entries checks them, inflated on request
 * into the caller's buffer as DzipReader.files does. */
#include <stdio.h>

#include "internal.h"

#define NAME_CAP (DZ_FILE_NAME_MAX + 1)

/* One path segment of a carried file's name: 1 to 64 of [A-Za-z0-9._-], not starting with '.'. */
static int segment(const char *s, size_t n) {
    size_t i;
    if (n < 1 || n > 64 || s[0] == '.') return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* spec.FILE_NAME: one segment, or two joined by '/'; `len` bytes (a NUL inside fails). */
static int valid_name(const char *s, size_t len) {
    const char *slash = memchr(s, '/', len);
    if (!slash) return segment(s, len);
    return segment(s, (size_t)(slash - s)) && segment(slash + 1, len - (size_t)(slash - s) - 1);
}

/* The name of element `it`'s "name" member into buf (NAME_CAP bytes); its length, or 0 if it is
 * not a string or longer than any valid name. */
static size_t name_of(const dz_file *f, dz_json it, char *buf) {
    static const char *const keys[] = {"name"};
    const char *v[1];
    size_t n;
    dz__json_members(it.p, f->text + f->text_len, keys, 1, v);
    if (!v[0]) return 0;
    n = dz_json_string(dz__at(f, v[0]), buf, NAME_CAP);
    return n == (size_t)-1 || n >= NAME_CAP ? 0 : n;
}

/* Whether an earlier element than `it` has the same name. */
static int repeated(const dz_file *f, dz_json it, const char *name, size_t len) {
    char other[NAME_CAP];
    dz_json j;
    for (j = dz_json_first(dz__at(f, f->files)); j.p != it.p; j = dz_json_next(j))
        if (name_of(f, j, other) == len && memcmp(other, name, len) == 0) return 1;
    return 0;
}

static dz_status check_one(dz_file *f, dz_json it, size_t i, uint64_t *total) {
    static const char *const keys[] = {"length", "stream"};
    const char *end = f->text + f->text_len, *v[2];
    char name[NAME_CAP];
    uint64_t length = 0, si = 0;
    size_t n = dz__json_type(it.p) == DZ_JSON_OBJECT ? name_of(f, it, name) : 0;
    if (n) dz__json_members(it.p, end, keys, 2, v);
    if (!n || !valid_name(name, n) || repeated(f, it, name, n) || !v[0] || !dz__json_is_uint(v[0], end, &length) ||
        !v[1] || !dz__json_is_uint(v[1], end, &si) || si >= f->n_streams)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: carried file %lu lacks a valid, unique name, a length or "
                        "a stream.", (unsigned long)i);
    if (f->streams[si].kind != DZ__RAW)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: carried file '%s' is not in a raw stream.", name);
    *total = length > UINT64_MAX - *total ? UINT64_MAX : *total + length;
    return DZ_OK;
}

dz_status dz__files(dz_file *f, const char *files) {
    uint64_t total = 0, bound = ((uint64_t)1 << 20) + 64 * (uint64_t)f->size;
    dz_json it;
    size_t i = 0;
    dz_status st;
    f->files = NULL;
    f->n_files = 0;
    if (f->version < 6 || !files) return DZ_OK;  /* before version 6 the key means nothing */
    if (dz__json_type(files) != DZ_JSON_ARRAY || dz_json_size(dz__at(f, files)) > DZ_MAX_FILES)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: 'files' is not a list of at most %d.", DZ_MAX_FILES);
    f->files = files;
    for (it = dz_json_first(dz__at(f, files)); it.p; it = dz_json_next(it), i++)
        if ((st = check_one(f, it, i, &total)) != DZ_OK) return st;
    if (total > bound)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: its carried files claim %llu bytes.",
                        (unsigned long long)total);
    f->n_files = i;
    return DZ_OK;
}

/* Element `index` of the files list and its stream and length (checked on open). */
static dz_json element(const dz_file *f, size_t index, uint32_t *si, uint64_t *length) {
    static const char *const keys[] = {"length", "stream"};
    const char *v[2];
    uint64_t s = 0;
    dz_json it = dz_json_first(dz__at(f, f->files));
    while (index--) it = dz_json_next(it);
    dz__json_members(it.p, f->text + f->text_len, keys, 2, v);
    dz__json_is_uint(v[0], f->text + f->text_len, length);
    dz__json_is_uint(v[1], f->text + f->text_len, &s);
    *si = (uint32_t)s;
    return it;
}

int dz__file_streams(dz_file *f, size_t *uses) {
    uint64_t length;
    uint32_t si;
    size_t i;
    int bad = 0;
    for (i = 0; i < f->n_files; i++) {
        element(f, i, &si, &length);
        (*uses)++;
        if (f->streams[si].named) bad = 1;
        f->streams[si].named = 1;
    }
    return bad;
}

size_t dz_file_count(const dz_file *f) { return f && f->opened ? f->n_files : 0; }

dz_status dz_file_info(dz_file *f, size_t index, char *name, size_t name_cap, uint64_t *length) {
    char buf[NAME_CAP];
    uint64_t len;
    uint32_t si;
    size_t n;
    dz_json it;
    if (!f || !f->opened || index >= f->n_files)
        return f ? dz__fail(f, DZ_E_ARG, "there is no carried file %lu in this file.", (unsigned long)index) : DZ_E_ARG;
    it = element(f, index, &si, &len);
    n = name_of(f, it, buf);
    if (name && name_cap <= n) {
        f->needed = n + 1;
        return dz__fail(f, DZ_E_OUTPUT, "carried file %lu's name needs %lu bytes, not %lu.", (unsigned long)index,
                        (unsigned long)(n + 1), (unsigned long)name_cap);
    }
    if (name) memcpy(name, buf, n + 1);
    if (length) *length = len;
    return DZ_OK;
}

dz_status dz_file_read(dz_file *f, size_t index, uint8_t *out, size_t cap) {
    const char *why = "";
    uint64_t length, got = 0;
    uint32_t si;
    dz_status st;
    int rc;
    if ((st = dz_file_info(f, index, NULL, 0, &length)) != DZ_OK) return st;
    element(f, index, &si, &length);
    if (length > cap || (!out && length)) {
        f->needed = length > SIZE_MAX ? SIZE_MAX : (size_t)length;
        return dz__fail(f, DZ_E_OUTPUT, "carried file %lu inflates to %llu bytes, more than %lu.", (unsigned long)index,
                        (unsigned long long)length, (unsigned long)cap);
    }
    rc = dz__inflate(dz__stream_bytes(f, si), (size_t)f->streams[si].length, out, (size_t)length, length, &got, &why);
    if (rc || got != length)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: its carried file %lu does not inflate to %llu bytes.",
                        (unsigned long)index, (unsigned long long)length);
    return DZ_OK;
}
