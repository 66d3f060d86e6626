/* src/printf.c against the host's C library, on every kind of directive libdzip's and dzrt's
 * messages use (built natively with its functions renamed: `make test`). Exit status 0 when
 * every output and return value is the same, also when truncated. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int dzw_test_snprintf(char *buf, size_t cap, const char *fmt, ...);

static int bad;

#define CHECK(...) do {                                                                         \
        char a[96], b[96];                                                                      \
        size_t caps[] = {sizeof a, 5, 1};                                                       \
        for (int i = 0; i < 3; i++) {                                                           \
            int x = snprintf(a, caps[i], __VA_ARGS__), y = dzw_test_snprintf(b, caps[i], __VA_ARGS__); \
            if (x != y || strcmp(a, b)) { printf("differs: \"%s\" (%d) against \"%s\" (%d)\n", a, x, b, y); bad++; } \
        }                                                                                       \
    } while (0)

int main(void) {
    CHECK("a plain sentence.");
    CHECK("%s|%.3s|%.60s|%.20s", "abc", "abcdef", "x", "");
    CHECK("%.*s|%.*s", 2, "hello", 0, "hello");
    CHECK("%c%c%c", 'a', '~', ' ');
    CHECK("%d %d %i %d %ld %ld", 0, -5, 2147483647, (int)-2147483647 - 1, -2147483647L - 1, 9L);
    CHECK("%u %u %lu %llu %llu", 0u, 4294967295u, 4294967295ul, 18446744073709551615ull, 0ull);
    CHECK("%zu %zu", (size_t)0, (size_t)123456789);
    CHECK("\\x%02x \\x%02x %x %x", 5u, 0xabu, 0xdeadu, 0u);
    CHECK("%#x %#x %#x", 0u, 1u, 0xffffffffu);
    CHECK("%5u|%06u|%3s|%1s|%%|%3c", 42u, 42u, "a", "abc", 'z');
    CHECK("%.0u|%.3u|%.1d|%4.2u", 0u, 7u, -3, 5u);
    printf("%s\n", bad ? "printf.c differs from the C library" : "printf.c formats as the C library does");
    return bad != 0;
}
