/* The header's JSON: validated once, strictly as Python's json.loads (RFC 8259 plus its two
 * limits), then read in place. No token array: a value is found by scanning its object, so the
 * header costs its own text and nothing per token, and the text is never modified. */
#include "internal.h"

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex4(const char *p, uint32_t *v) {
    uint32_t x = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        x <<= 4;
        if (is_digit(c)) x |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *v = x;
    return 1;
}

const char *dz__json_ws(const char *p, const char *end) {
    while (p < end && is_ws(*p)) p++;
    return p;
}

static const char *scan_string(const char *p, const char *end, const char **why) {
    uint32_t v;
    for (p++; p < end;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) { *why = "Invalid control character"; return NULL; }
        if (c != '\\') { p++; continue; }
        if (end - p < 2) break;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u':
            if (end - p < 6 || !hex4(p + 2, &v)) { *why = "Invalid \\uXXXX escape"; return NULL; }
            p += 6;
            break;
        default:
            *why = "Invalid \\escape";
            return NULL;
        }
    }
    *why = "Unterminated string";
    return NULL;
}

/* Python's number grammar -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?; an integer literal of more
 * digits than int() takes is refused as Python refuses it. */
static const char *scan_number(const char *p, const char *end, const char **why) {
    const char *digits;
    int frac = 0, exp = 0;
    if (*p == '-') p++;
    digits = p;
    if (p < end && *p == '0') p++;
    else if (p < end && *p >= '1' && *p <= '9') while (p < end && is_digit(*p)) p++;
    else { *why = "Expecting value"; return NULL; }
    if (end - p >= 2 && *p == '.' && is_digit(p[1])) {
        frac = 1;
        for (p += 2; p < end && is_digit(*p);) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q < end && is_digit(*q)) {
            exp = 1;
            while (q < end && is_digit(*q)) q++;
            p = q;
        }
    }
    if (!frac && !exp && p - digits > DZ__INT_MAX_DIGITS) { *why = "an integer literal exceeds 4300 digits"; return NULL; }
    return p;
}

static const char *scan_scalar(const char *p, const char *end, const char **why) {
    static const char *const words[3] = {"true", "false", "null"};
    int i;
    if (*p == '"') return scan_string(p, end, why);
    if (*p == '-' || is_digit(*p)) return scan_number(p, end, why);
    for (i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0) return p + n;
    }
    *why = "Expecting value";  /* NaN and Infinity too: deepzip's reader refuses them */
    return NULL;
}

/* Iterative, so a hostile nesting costs a bit of `stack` per level and no C stack. */
int dz__json_validate(const char *s, size_t n, const char **why, size_t *at) {
    const char *p = s, *end = s + n;
    uint8_t stack[DZ__JSON_MAX_DEPTH / 8];
    unsigned depth = 0;
    p = dz__json_ws(p, end);
value:
    if (p == end) { *why = "Expecting value"; goto fail; }
    if (*p == '{' || *p == '[') {
        int obj = *p == '{';
        if (depth == DZ__JSON_MAX_DEPTH) { *why = "it nests deeper than 512 levels"; goto fail; }
        if (obj) stack[depth / 8] |= (uint8_t)(1u << (depth % 8));
        else stack[depth / 8] &= (uint8_t)~(1u << (depth % 8));
        depth++;
        p = dz__json_ws(p + 1, end);
        if (p < end && *p == (obj ? '}' : ']')) { p++; depth--; goto after; }
        if (obj) goto key;
        goto value;
    }
    if (!(p = scan_scalar(p, end, why))) { p = end; goto fail; }
    goto after;
key:
    if (p == end || *p != '"') { *why = "Expecting property name enclosed in double quotes"; goto fail; }
    if (!(p = scan_string(p, end, why))) { p = end; goto fail; }
    p = dz__json_ws(p, end);
    if (p == end || *p != ':') { *why = "Expecting ':' delimiter"; goto fail; }
    p = dz__json_ws(p + 1, end);
    goto value;
after:
    p = dz__json_ws(p, end);
    if (depth == 0) {
        if (p != end) { *why = "Extra data"; goto fail; }
        return 1;
    }
    {
        int obj = (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
        if (p < end && *p == ',') { p = dz__json_ws(p + 1, end); if (obj) goto key; goto value; }
        if (p < end && *p == (obj ? '}' : ']')) { p++; depth--; goto after; }
        *why = "Expecting ',' delimiter";
    }
fail:
    *at = (size_t)(p - s);
    return 0;
}

const char *dz__json_skip(const char *p, const char *end) {
    int depth = 0;
    do {
        char c = *p;
        if (c == '"') {
            for (p++; *p != '"'; p++) if (*p == '\\') p++;
            p++;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            depth--;
            p++;
        } else if (depth == 0) {
            while (p < end && (is_digit(*p) || (*p >= 'a' && *p <= 'z') || *p == 'E' || *p == '+' ||
                               *p == '-' || *p == '.')) p++;
        } else {
            p++;
        }
    } while (depth > 0 && p < end);
    return p;
}

static size_t utf8_put(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { out[0] = (unsigned char)(0xC0 | (cp >> 6)); out[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        out[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
    out[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* The next bytes of a validated string as Python decodes it (0 at the closing quote): raw bytes
 * as they are, escapes as UTF-8, a surrogate pair joined the way Python's scanner joins it. */
size_t dz__json_unit(const char **pp, unsigned char out[4]) {
    const char *p = *pp;
    uint32_t cp, lo;
    if (*p == '"') return 0;
    if (*p != '\\') { out[0] = (unsigned char)*p; *pp = p + 1; return 1; }
    switch (p[1]) {
    case 'b': cp = 8; break;
    case 'f': cp = 12; break;
    case 'n': cp = 10; break;
    case 'r': cp = 13; break;
    case 't': cp = 9; break;
    case 'u':
        hex4(p + 2, &cp);
        p += 6;
        if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) &&
            lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        *pp = p;
        return utf8_put(cp, out);
    default: cp = (unsigned char)p[1]; break;  /* " \ / */
    }
    *pp = p + 2;
    return utf8_put(cp, out);
}

int dz__json_str_eq(const char *p, const char *lit) {
    unsigned char u[4];
    size_t n, i;
    if (!p || *p != '"') return 0;
    for (p++; (n = dz__json_unit(&p, u)) != 0;)
        for (i = 0; i < n; i++, lit++)
            if (*lit == '\0' || (unsigned char)*lit != u[i]) return 0;
    return *lit == '\0';
}

size_t dz__json_str_decode(const char *p, char *out) {
    unsigned char u[4];
    size_t n, len = 0;
    for (p++; (n = dz__json_unit(&p, u)) != 0; len += n)
        if (out) memcpy(out + len, u, n);
    if (out) out[len] = '\0';
    return len;
}

/* Decimal to double: exact (one rounding) for up to 19 digits and |exponent| <= 22 with a
 * mantissa below 2^53, a few ulps otherwise. The reader only compares such values with integers. */
static double to_double(uint64_t m, long e10) {
    static const double exact[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double d = (double)m, scale = 1.0, base = 10.0;
    unsigned long k = (unsigned long)(e10 < 0 ? -e10 : e10);
    if (m == 0) return 0.0;
    if (k <= 22) return e10 < 0 ? d / exact[k] : d * exact[k];
    if (k > 400) k = 400;  /* past any double's range either way */
    for (; k; k >>= 1, base *= base) if (k & 1) scale *= base;
    return e10 < 0 ? d / scale : d * scale;
}

int dz__json_num(const char *p, const char *end, dz__num *out) {
    uint64_t m = 0;
    long e10 = 0, ex = 0;
    int sig = 0, exneg = 0;
    memset(out, 0, sizeof *out);
    out->is_int = 1;
    if (p < end && *p == '-') { out->neg = 1; p++; }
    if (p == end || !is_digit(*p)) return 0;
    for (; p < end && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (out->u > (UINT64_MAX - d) / 10) out->huge = 1;
        out->u = out->huge ? UINT64_MAX : out->u * 10 + d;
        if (sig < 19) { m = m * 10 + d; if (m) sig++; } else e10++;
    }
    if (p < end && *p == '.') {
        out->is_int = 0;
        for (p++; p < end && is_digit(*p); p++)
            if (sig < 19) { m = m * 10 + (unsigned)(*p - '0'); e10--; if (m) sig++; }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        out->is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) exneg = *p++ == '-';
        for (; p < end && is_digit(*p); p++) if (ex < 100000) ex = ex * 10 + (*p - '0');
        e10 += exneg ? -ex : ex;
    }
    out->d = to_double(m, e10);
    if (out->neg) out->d = -out->d;
    return 1;
}

int dz__json_type(const char *v) {
    if (!v) return DZ_JSON_ABSENT;
    switch (*v) {
    case 'n': return DZ_JSON_NULL;
    case 'f': return DZ_JSON_FALSE;
    case 't': return DZ_JSON_TRUE;
    case '"': return DZ_JSON_STRING;
    case '[': return DZ_JSON_ARRAY;
    case '{': return DZ_JSON_OBJECT;
    default: return DZ_JSON_NUMBER;
    }
}

int dz__json_is_uint(const char *v, const char *end, uint64_t *u) {
    dz__num n;
    if (dz__json_type(v) != DZ_JSON_NUMBER || !dz__json_num(v, end, &n) || !n.is_int) return 0;
    if (n.neg && n.u != 0) return 0;  /* "-0" is Python's int 0 */
    *u = n.u;
    return 1;
}

/* p at a key or array element: its value (keys) or itself, then the next item or NULL. */
const char *dz__json_after_item(const char *p, const char *end, const char **value) {
    const char *q = p;
    if (*q == '"') {
        q = dz__json_ws(dz__json_skip(q, end), end);
        if (q < end && *q == ':') p = dz__json_ws(q + 1, end);
    }
    if (value) *value = p;
    p = dz__json_ws(dz__json_skip(p, end), end);
    return (p < end && *p == ',') ? dz__json_ws(p + 1, end) : NULL;
}

const char *dz__json_first_item(const char *c, const char *end) {
    const char *p = dz__json_ws(c + 1, end);
    return (*p == '}' || *p == ']') ? NULL : p;
}

void dz__json_members(const char *obj, const char *end, const char *const *keys, size_t n,
                      const char **vals) {
    const char *k, *v;
    size_t i;
    for (i = 0; i < n; i++) vals[i] = NULL;
    for (k = dz__json_first_item(obj, end); k; ) {
        const char *next = dz__json_after_item(k, end, &v);
        for (i = 0; i < n; i++) if (dz__json_str_eq(k, keys[i])) vals[i] = v;
        k = next;
    }
}
