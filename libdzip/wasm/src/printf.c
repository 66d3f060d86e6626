/* snprintf and vsnprintf for the messages of libdzip and dzrt, in place of wasi-libc's.
 *
 * Why: wasi-libc's vfprintf refers to stderr, and stderr to the WASI calls fd_write, fd_seek and
 * fd_close, which would then be imports every page has to stub. The messages use only
 * %s %c %d %i %u %x with the flags '#' and '0' (right-justified), a width, a precision (.N or .*) and the length
 * modifiers l, ll and z: this is that subset, formatting as C99 says (so the sentences are
 * byte for byte the native build's). Anything else is copied out as written. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct out {
    char *buf;
    size_t cap, len;      /* len counts every byte, also those past cap */
} out;

static void put(out *o, char c) {
    if (o->len + 1 < o->cap) o->buf[o->len] = c;
    o->len++;
}

static void pad(out *o, char c, int n) {
    while (n-- > 0) put(o, c);
}

/* An unsigned number in `base` with a prefix ("0x", "-"), padded to `width` (zeros between the
 * prefix and the digits when `zero`), at least `prec` digits. */
static void number(out *o, unsigned long long v, unsigned base, const char *prefix, int width, int prec, int zero) {
    char digits[24];
    int n = 0, plen = (int)strlen(prefix), fill;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (prec == 0 && n == 1 && digits[0] == '0') n = 0;
    fill = width - plen - (prec > n ? prec : n);
    if (!zero || prec >= 0) pad(o, ' ', fill);
    while (*prefix) put(o, *prefix++);
    if (zero && prec < 0) pad(o, '0', fill);
    pad(o, '0', prec - n);
    while (n) put(o, digits[--n]);
}

int vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap) {
    out o = {buf, cap, 0};
    for (; *fmt; fmt++) {
        int alt = 0, zero = 0, width = 0, prec = -1, lng = 0;
        const char *spec = fmt;
        unsigned long long u;
        long long s;
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        for (fmt++; *fmt == '#' || *fmt == '0'; fmt++) {
            if (*fmt == '#') alt = 1;
            else zero = 1;
        }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9') prec = prec * 10 + (*fmt++ - '0');
            }
        }
        if (*fmt == 'z') { lng = 3; fmt++; }
        else if (*fmt == 'l') { lng = 1; if (*++fmt == 'l') { lng = 2; fmt++; } }
        switch (*fmt) {
        case 's': {
            const char *str = va_arg(ap, const char *);
            size_t n = 0;
            if (!str) str = "(null)";
            while ((prec < 0 || n < (size_t)prec) && str[n]) n++;
            pad(&o, ' ', width - (int)n);
            for (size_t i = 0; i < n; i++) put(&o, str[i]);
            break;
        }
        case 'c':
            pad(&o, ' ', width - 1);
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd':
        case 'i':
            s = lng == 2 ? va_arg(ap, long long) : lng == 1 ? va_arg(ap, long) : lng == 3 ? (long long)va_arg(ap, size_t)
                                                                                         : va_arg(ap, int);
            number(&o, s < 0 ? 0ull - (unsigned long long)s : (unsigned long long)s, 10, s < 0 ? "-" : "", width, prec, zero);
            break;
        case 'u':
        case 'x':
            u = lng == 2 ? va_arg(ap, unsigned long long) : lng == 1 ? va_arg(ap, unsigned long)
                : lng == 3 ? va_arg(ap, size_t) : va_arg(ap, unsigned);
            number(&o, u, *fmt == 'u' ? 10 : 16, *fmt == 'x' && alt && u ? "0x" : "", width, prec, zero);
            break;
        case '%':
            put(&o, '%');
            break;
        default:   /* not in the subset: copy the directive as written */
            while (spec <= fmt && *spec) put(&o, *spec++);
            if (!*fmt) fmt--;
            break;
        }
    }
    if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}
