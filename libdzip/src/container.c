/* The container: preamble, whole-file crc32, the bounded header inflate, and the dz_file's
 * accessors. Checks run in the Python reader's order, so the first failure is the one it names. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static const uint32_t crc_table[256] = {
    0x00000000UL, 0x77073096UL, 0xee0e612cUL, 0x990951baUL, 0x076dc419UL, 0x706af48fUL,
    0xe963a535UL, 0x9e6495a3UL, 0x0edb8832UL, 0x79dcb8a4UL, 0xe0d5e91eUL, 0x97d2d988UL,
    0x09b64c2bUL, 0x7eb17cbdUL, 0xe7b82d07UL, 0x90bf1d91UL, 0x1db71064UL, 0x6ab020f2UL,
    0xf3b97148UL, 0x84be41deUL, 0x1adad47dUL, 0x6ddde4ebUL, 0xf4d4b551UL, 0x83d385c7UL,
    0x136c9856UL, 0x646ba8c0UL, 0xfd62f97aUL, 0x8a65c9ecUL, 0x14015c4fUL, 0x63066cd9UL,
    0xfa0f3d63UL, 0x8d080df5UL, 0x3b6e20c8UL, 0x4c69105eUL, 0xd56041e4UL, 0xa2677172UL,
    0x3c03e4d1UL, 0x4b04d447UL, 0xd20d85fdUL, 0xa50ab56bUL, 0x35b5a8faUL, 0x42b2986cUL,
    0xdbbbc9d6UL, 0xacbcf940UL, 0x32d86ce3UL, 0x45df5c75UL, 0xdcd60dcfUL, 0xabd13d59UL,
    0x26d930acUL, 0x51de003aUL, 0xc8d75180UL, 0xbfd06116UL, 0x21b4f4b5UL, 0x56b3c423UL,
    0xcfba9599UL, 0xb8bda50fUL, 0x2802b89eUL, 0x5f058808UL, 0xc60cd9b2UL, 0xb10be924UL,
    0x2f6f7c87UL, 0x58684c11UL, 0xc1611dabUL, 0xb6662d3dUL, 0x76dc4190UL, 0x01db7106UL,
    0x98d220bcUL, 0xefd5102aUL, 0x71b18589UL, 0x06b6b51fUL, 0x9fbfe4a5UL, 0xe8b8d433UL,
    0x7807c9a2UL, 0x0f00f934UL, 0x9609a88eUL, 0xe10e9818UL, 0x7f6a0dbbUL, 0x086d3d2dUL,
    0x91646c97UL, 0xe6635c01UL, 0x6b6b51f4UL, 0x1c6c6162UL, 0x856530d8UL, 0xf262004eUL,
    0x6c0695edUL, 0x1b01a57bUL, 0x8208f4c1UL, 0xf50fc457UL, 0x65b0d9c6UL, 0x12b7e950UL,
    0x8bbeb8eaUL, 0xfcb9887cUL, 0x62dd1ddfUL, 0x15da2d49UL, 0x8cd37cf3UL, 0xfbd44c65UL,
    0x4db26158UL, 0x3ab551ceUL, 0xa3bc0074UL, 0xd4bb30e2UL, 0x4adfa541UL, 0x3dd895d7UL,
    0xa4d1c46dUL, 0xd3d6f4fbUL, 0x4369e96aUL, 0x346ed9fcUL, 0xad678846UL, 0xda60b8d0UL,
    0x44042d73UL, 0x33031de5UL, 0xaa0a4c5fUL, 0xdd0d7cc9UL, 0x5005713cUL, 0x270241aaUL,
    0xbe0b1010UL, 0xc90c2086UL, 0x5768b525UL, 0x206f85b3UL, 0xb966d409UL, 0xce61e49fUL,
    0x5edef90eUL, 0x29d9c998UL, 0xb0d09822UL, 0xc7d7a8b4UL, 0x59b33d17UL, 0x2eb40d81UL,
    0xb7bd5c3bUL, 0xc0ba6cadUL, 0xedb88320UL, 0x9abfb3b6UL, 0x03b6e20cUL, 0x74b1d29aUL,
    0xead54739UL, 0x9dd277afUL, 0x04db2615UL, 0x73dc1683UL, 0xe3630b12UL, 0x94643b84UL,
    0x0d6d6a3eUL, 0x7a6a5aa8UL, 0xe40ecf0bUL, 0x9309ff9dUL, 0x0a00ae27UL, 0x7d079eb1UL,
    0xf00f9344UL, 0x8708a3d2UL, 0x1e01f268UL, 0x6906c2feUL, 0xf762575dUL, 0x806567cbUL,
    0x196c3671UL, 0x6e6b06e7UL, 0xfed41b76UL, 0x89d32be0UL, 0x10da7a5aUL, 0x67dd4accUL,
    0xf9b9df6fUL, 0x8ebeeff9UL, 0x17b7be43UL, 0x60b08ed5UL, 0xd6d6a3e8UL, 0xa1d1937eUL,
    0x38d8c2c4UL, 0x4fdff252UL, 0xd1bb67f1UL, 0xa6bc5767UL, 0x3fb506ddUL, 0x48b2364bUL,
    0xd80d2bdaUL, 0xaf0a1b4cUL, 0x36034af6UL, 0x41047a60UL, 0xdf60efc3UL, 0xa867df55UL,
    0x316e8eefUL, 0x4669be79UL, 0xcb61b38cUL, 0xbc66831aUL, 0x256fd2a0UL, 0x5268e236UL,
    0xcc0c7795UL, 0xbb0b4703UL, 0x220216b9UL, 0x5505262fUL, 0xc5ba3bbeUL, 0xb2bd0b28UL,
    0x2bb45a92UL, 0x5cb36a04UL, 0xc2d7ffa7UL, 0xb5d0cf31UL, 0x2cd99e8bUL, 0x5bdeae1dUL,
    0x9b64c2b0UL, 0xec63f226UL, 0x756aa39cUL, 0x026d930aUL, 0x9c0906a9UL, 0xeb0e363fUL,
    0x72076785UL, 0x05005713UL, 0x95bf4a82UL, 0xe2b87a14UL, 0x7bb12baeUL, 0x0cb61b38UL,
    0x92d28e9bUL, 0xe5d5be0dUL, 0x7cdcefb7UL, 0x0bdbdf21UL, 0x86d3d2d4UL, 0xf1d4e242UL,
    0x68ddb3f8UL, 0x1fda836eUL, 0x81be16cdUL, 0xf6b9265bUL, 0x6fb077e1UL, 0x18b74777UL,
    0x88085ae6UL, 0xff0f6a70UL, 0x66063bcaUL, 0x11010b5cUL, 0x8f659effUL, 0xf862ae69UL,
    0x616bffd3UL, 0x166ccf45UL, 0xa00ae278UL, 0xd70dd2eeUL, 0x4e048354UL, 0x3903b3c2UL,
    0xa7672661UL, 0xd06016f7UL, 0x4969474dUL, 0x3e6e77dbUL, 0xaed16a4aUL, 0xd9d65adcUL,
    0x40df0b66UL, 0x37d83bf0UL, 0xa9bcae53UL, 0xdebb9ec5UL, 0x47b2cf7fUL, 0x30b5ffe9UL,
    0xbdbdf21cUL, 0xcabac28aUL, 0x53b39330UL, 0x24b4a3a6UL, 0xbad03605UL, 0xcdd70693UL,
    0x54de5729UL, 0x23d967bfUL, 0xb3667a2eUL, 0xc4614ab8UL, 0x5d681b02UL, 0x2a6f2b94UL,
    0xb40bbe37UL, 0xc30c8ea1UL, 0x5a05df1bUL, 0x2d02ef8dUL
};

uint32_t dz__crc32(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

dz_status dz__fail(dz_file *f, dz_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    f->status = status;
    return status;
}

size_t dz__align8(size_t n) { return (n + 7) & ~(size_t)7; }

uint8_t *dz__align_ptr(void *p) {
    uintptr_t a = (uintptr_t)p;
    return (uint8_t *)p + ((8 - (a & 7)) & 7);
}

uint64_t dz__sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

uint64_t dz__sat_mul(uint64_t a, uint64_t b) {
    if (a == 0 || b == 0) return 0;
    return a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* Strictly as Python's bytes.decode("utf-8"): no overlong forms, surrogates or values past U+10FFFF. */
int dz__utf8_valid(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        unsigned need, k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else break;
        if (n - i <= need) break;
        for (k = 1; k <= need; k++) {
            uint8_t b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
        }
        if (k <= need) break;
        i += need + 1;
    }
    *bad_at = i;
    return i == n;
}

static dz_status preamble(dz_file *f, uint64_t *header_len) {
    const uint8_t *d = f->data;
    char magic[20];
    size_t i, m = 0;
    uint64_t n;
    if (f->size < 20) return dz__fail(f, DZ_E_FORMAT, "the file is not a .dzip file: it is only %lu bytes long.", (unsigned long)f->size);
    if (memcmp(d, "DZIP", 4) != 0) {
        for (i = 0; i < 4; i++)
            m += (size_t)snprintf(magic + m, sizeof magic - m, d[i] >= 32 && d[i] < 127 ? "%c" : "\\x%02x", d[i]);
        return dz__fail(f, DZ_E_FORMAT, "the file is not a .dzip file: it starts with '%s', not 'DZIP'.", magic);
    }
    f->version = dz__rd16(d + 4);
    f->flags = dz__rd16(d + 6);
    n = dz__rd64(d + 8);
    if (f->version < 1 || f->version > DZ_FORMAT_VERSION)
        return dz__fail(f, DZ_E_FORMAT, "the file is .dzip version %u, which this reader (reads up to %d) cannot read.",
                        f->version, DZ_FORMAT_VERSION);
    if (n > DZ__MAX_HEADER || n > (uint64_t)f->size - 20)
        return dz__fail(f, DZ_E_FORMAT, "the file is truncated or corrupt: its header claims %llu bytes but the file has %lu.",
                        (unsigned long long)n, (unsigned long)f->size);
    if (f->flags & ~1u) return dz__fail(f, DZ_E_FORMAT, "the file uses flags %#x that this reader does not know.", f->flags);
    if (dz__crc32(0, d, f->size - 4) != dz__rd32(d + f->size - 4))
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: its checksum does not match its contents.");
    *header_len = n;
    f->payload = d + 16 + n;
    f->payload_len = f->size - 20 - (size_t)n;
    return DZ_OK;
}

/* The header's JSON text: inflated into the front of the arena, or in place when not deflated. */
static dz_status header_text(dz_file *f, uint64_t n, uint8_t *arena, size_t arena_size, size_t *text_bytes) {
    uint64_t limit = ((uint64_t)1 << 20) + 64 * (uint64_t)f->size, len;
    const char *why = "";
    int rc;
    *text_bytes = 0;
    if (!(f->flags & 1)) {
        f->text = (const char *)f->data + 16;
        f->text_len = (size_t)n;
        return DZ_OK;
    }
    if (limit > DZ__MAX_HEADER) limit = DZ__MAX_HEADER;
    rc = dz__inflate(f->data + 16, (size_t)n, arena, arena_size, limit, &len, &why);
    if (rc == -1) return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: it does not inflate (%s).", why);
    if (rc) return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: it inflates past %llu bytes or ends early.",
                            (unsigned long long)limit);
    if (len > arena_size) {
        f->needed = (size_t)len;
        return dz__fail(f, DZ_E_ARENA, "the header inflates to %llu bytes, more than the arena's %lu; pass at least "
                        "that (the exact need is known once it fits).", (unsigned long long)len, (unsigned long)arena_size);
    }
    f->text = (const char *)arena;
    f->text_len = (size_t)len;
    *text_bytes = (size_t)len;
    return DZ_OK;
}

dz_status dz_open(dz_file *f, const uint8_t *data, size_t size, void *arena, size_t arena_size) {
    uint64_t n = 0;
    size_t text_bytes;
    dz_status st;
    if (!f) return DZ_E_ARG;
    memset(f, 0, sizeof *f);
    if ((!data && size) || (!arena && arena_size))
        return dz__fail(f, DZ_E_ARG, "dz_open was given a NULL buffer of nonzero size.");
    f->data = data;
    f->size = size;
    if ((st = preamble(f, &n)) != DZ_OK) return st;
    if ((st = header_text(f, n, (uint8_t *)arena, arena_size, &text_bytes)) != DZ_OK) return st;
    return dz__header(f, (uint8_t *)arena, arena_size, text_bytes);
}

dz_status dz_status_of(const dz_file *f) { return f->status; }
const char *dz_message(const dz_file *f) { return f->message; }
size_t dz_needed(const dz_file *f) { return f->needed; }
size_t dz_arena_used(const dz_file *f) { return f->arena_used; }
unsigned dz_version(const dz_file *f) { return f->version; }
size_t dz_scratch_max(const dz_file *f) { return f->scratch_max; }
size_t dz_tensor_count(const dz_file *f) { return f->n_entries; }

const char *dz_status_name(dz_status s) {
    static const char *const names[] = {"DZ_OK", "DZ_E_FORMAT", "DZ_E_ARENA", "DZ_E_SCRATCH",
                                        "DZ_E_OUTPUT", "DZ_E_ARG", "DZ_E_LIMIT"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "DZ_E_UNKNOWN";
}

dz_json dz_header(const dz_file *f) {
    dz_json j;
    j.p = f->text ? dz__json_ws(f->text, f->text + f->text_len) : NULL;
    j.end = f->text ? f->text + f->text_len : NULL;
    return j;
}
