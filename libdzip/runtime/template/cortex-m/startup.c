/* Reset and fault handlers for a Cortex-M4F, and semihosting (output through the debugger or
 * QEMU). Just enough to run main() on bare metal: no interrupts are used. */
#include <stddef.h>
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);
void dz_reset(void);
static void fault(void);

/* Entry 0 is the initial stack pointer, not a handler: a union keeps the table ISO C. */
typedef union {
    void (*handler)(void);
    uint32_t *stack;
} vector;

__attribute__((section(".vectors"), used)) static const vector vectors[16] = {
    {.stack = _estack}, {.handler = dz_reset}, {.handler = fault}, {.handler = fault},  /* SP, reset, NMI, hard fault */
    {.handler = fault}, {.handler = fault}, {.handler = fault},                       /* mem, bus, usage fault */
};

int dz_semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void dz_puts(const char *s) { dz_semihost(0x04, s); }  /* SYS_WRITE0 */

void dz_exit(int status) {
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (QEMU exits 0) or RunTimeErrorUnknown (exits 1). */
    for (;;) dz_semihost(0x18, (const void *)(uintptr_t)(status ? 0x20023u : 0x20026u));
}

/* There is no heap: the runtime and libdzip never allocate. newlib-nano's printf core still links
 * malloc (for asprintf's growing buffers, which snprintf never uses), and malloc asks _sbrk for
 * memory: any call at all would be a bug, so it stops the program instead of returning memory. */
void *_sbrk(ptrdiff_t increment);
void *_sbrk(ptrdiff_t increment) {
    (void)increment;
    dz_puts("malloc was called: there is no heap\n");
    dz_exit(3);
    return (void *)-1;
}

static void fault(void) {
    dz_puts("fault\n");
    dz_exit(2);
}

void dz_reset(void) {
    uint32_t *src = _sidata, *dst;
    /* The FPU is off at reset: grant CP10 and CP11 (CPACR) before the first float instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (dst = _sdata; dst < _edata;) *dst++ = *src++;
    for (dst = _sbss; dst < _ebss;) *dst++ = 0;
    dz_exit(main());
}
