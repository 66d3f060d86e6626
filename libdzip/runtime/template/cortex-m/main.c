/* The exported network on a Cortex-M4: classifies samples.h's inputs (in flash) and prints, through
 * semihosting, each one's top-1 class and logits (float bits in hex, to compare bit for bit with
 * the desktop build), the arena and the stack's high-water mark.
 *
 * It also counts SysTick ticks per inference. On hardware those are core clock cycles. Under
 * QEMU with -icount shift=0 (the Makefile's `qemu`) virtual time advances one nanosecond per
 * instruction, so ticks measure instructions executed, calibrated by a loop of known length:
 * not cycles (no pipeline, flash wait states or memory timing is modelled). */
#include <stdint.h>

#include "model.h"
#include "samples.h"
#include "semihost.h"

extern uint32_t _sstack[], _estack[];
#define PAINT 0xA5A5A5A5u

/* SysTick (ARMv7-M system control space): 24-bit down-counter on the core clock. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define LOOP_INSNS 2097152u   /* the calibration loop below: 2^20 iterations of subs + bne */

static float logits[DZ_MODEL_OUTPUT_NUMEL];

static void put_uint(uint32_t v, unsigned base, int width) {
    char buf[12], *p = buf + sizeof buf - 1;
    int n = 0;
    *p = '\0';
    do {
        *--p = "0123456789abcdef"[v % base];
        v /= base;
        n++;
    } while (v || n < width);
    dz_puts(p);
}

/* Fill the unused stack with a pattern; what is overwritten later was used. */
static void paint(void) {
    volatile uint32_t *p = _sstack;
    uint32_t here;
    while ((uintptr_t)p < (uintptr_t)&here - 256) *p++ = PAINT;
}

static uint32_t stack_used(void) {
    const uint32_t *p = _sstack;
    while (p < _estack && *p == PAINT) p++;
    return (uint32_t)((uintptr_t)_estack - (uintptr_t)p);
}

static uint32_t ticks_since(uint32_t start) { return (start - SYST_CVR) & 0xFFFFFFu; }

static uint32_t calibrate(void) {
    uint32_t t = SYST_CVR;
    __asm__ volatile("mov r0, #0x100000\n1:\n\tsubs r0, r0, #1\n\tbne 1b" ::: "r0", "cc");
    return ticks_since(t);
}

int main(void) {
    int i, k;
    uint32_t t;
    paint();
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u;  /* enabled, core clock, no interrupt */
    dz_puts("systick: ");
    put_uint(calibrate(), 10, 1);
    dz_puts(" ticks for ");
    put_uint(LOOP_INSNS, 10, 1);
    dz_puts(" loop instructions\n");
    t = SYST_CVR;
    if (dz_model_init()) {
        dz_puts("init failed: ");
        dz_puts(dz_model_error());
        dz_puts("\n");
        return 1;
    }
    k = (int)ticks_since(t);
    dz_puts("dzrt on a Cortex-M4: arena ");
    put_uint(DZ_MODEL_ARENA_BYTES, 10, 1);
    dz_puts(" bytes, init used ");
    put_uint((uint32_t)dz_model_init_peak(), 10, 1);
    dz_puts(", init ");
    put_uint((uint32_t)k, 10, 1);
    dz_puts(" ticks\n");
    for (i = 0; i < DZ_SAMPLES; i++) {
        int best = 0;
        union { float f; uint32_t u; } bits;
        t = SYST_CVR;
        if (dz_predict(dz_samples[i], logits)) {
            dz_puts(dz_model_error());
            return 1;
        }
        for (k = 1; k < DZ_MODEL_OUTPUT_NUMEL; k++)
            if (logits[k] > logits[best]) best = k;
        t = ticks_since(t);
        dz_puts("sample ");
        put_uint((uint32_t)i, 10, 1);
        dz_puts(": top-1 ");
        put_uint((uint32_t)best, 10, 1);
        dz_puts(" logits");
        for (k = 0; k < DZ_MODEL_OUTPUT_NUMEL; k++) {
            bits.f = logits[k];
            dz_puts(" ");
            put_uint(bits.u, 16, 8);
        }
        dz_puts(" ticks ");
        put_uint(t, 10, 1);
        dz_puts("\n");
    }
    dz_puts("stack used: ");
    put_uint(stack_used(), 10, 1);
    dz_puts(" bytes\n");
    return 0;
}
