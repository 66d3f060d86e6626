/* The public cursor over the validated header: values are found by scanning the text, so a
 * cursor is two pointers and costs nothing to copy. */
#include "internal.h"

static dz_json make(const char *p, const char *end) {
    dz_json j;
    j.p = p;
    j.end = p ? end : NULL;
    return j;
}

dz_json dz__at(const dz_file *f, const char *p) { return make(p, f->text + f->text_len); }

dz_json_type dz_json_kind(dz_json v) { return (dz_json_type)dz__json_type(v.p); }

dz_json dz_json_get(dz_json object, const char *key) {
    const char *v;
    if (dz_json_kind(object) != DZ_JSON_OBJECT || !key) return make(NULL, NULL);
    dz__json_members(object.p, object.end, &key, 1, &v);
    return make(v, object.end);
}

size_t dz_json_size(dz_json v) {
    size_t n = 0;
    const char *p;
    int k = dz_json_kind(v);
    if (k != DZ_JSON_ARRAY && k != DZ_JSON_OBJECT) return 0;
    for (p = dz__json_first_item(v.p, v.end); p; p = dz__json_after_item(p, v.end, NULL)) n++;
    return n;
}

dz_json dz_json_first(dz_json c) {
    int k = dz_json_kind(c);
    if (k != DZ_JSON_ARRAY && k != DZ_JSON_OBJECT) return make(NULL, NULL);
    return make(dz__json_first_item(c.p, c.end), c.end);
}

dz_json dz_json_next(dz_json item) {
    if (!item.p) return item;
    return make(dz__json_after_item(item.p, item.end, NULL), item.end);
}

dz_json dz_json_value(dz_json key) {
    const char *q;
    if (dz_json_kind(key) != DZ_JSON_STRING) return make(NULL, NULL);
    q = dz__json_ws(dz__json_skip(key.p, key.end), key.end);
    if (q >= key.end || *q != ':') return make(NULL, NULL);
    return make(dz__json_ws(q + 1, key.end), key.end);
}

int dz_json_uint(dz_json v, uint64_t *out) {
    dz__num n;
    if (dz_json_kind(v) != DZ_JSON_NUMBER || !dz__json_num(v.p, v.end, &n) || !n.is_int || n.huge) return 0;
    if (n.neg && n.u) return 0;
    *out = n.u;
    return 1;
}

int dz_json_int(dz_json v, int64_t *out) {
    dz__num n;
    if (dz_json_kind(v) != DZ_JSON_NUMBER || !dz__json_num(v.p, v.end, &n) || !n.is_int || n.huge) return 0;
    if (n.u > (uint64_t)INT64_MAX + (uint64_t)n.neg) return 0;
    *out = (n.neg && n.u) ? -(int64_t)(n.u - 1) - 1 : (int64_t)n.u;
    return 1;
}

int dz_json_number(dz_json v, double *out) {
    dz__num n;
    if (dz_json_kind(v) != DZ_JSON_NUMBER || !dz__json_num(v.p, v.end, &n)) return 0;
    *out = n.d;
    return 1;
}

size_t dz_json_string(dz_json v, char *buf, size_t cap) {
    unsigned char u[4];
    const char *p;
    size_t n, len = 0, i;
    if (dz_json_kind(v) != DZ_JSON_STRING) return (size_t)-1;
    for (p = v.p + 1; (n = dz__json_unit(&p, u)) != 0;)
        for (i = 0; i < n; i++, len++) if (buf && len < cap) buf[len] = (char)u[i];
    if (buf && len < cap) buf[len] = '\0';
    return len;
}

int dz_json_is(dz_json v, const char *s) {
    return dz_json_kind(v) == DZ_JSON_STRING && s && dz__json_str_eq(v.p, s);
}
