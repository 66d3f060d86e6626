/* Shared by the runtime's source files; nothing here is public. */
#ifndef DZRT_INTERNAL_H
#define DZRT_INTERNAL_H

#include "dzrt.h"

/* Where each piece of a packed layer lies, as byte offsets from layer.offset (README.md,
 * "Packed weights"); DZRT__ABSENT for a piece the layer has not. */
#define DZRT__ABSENT UINT64_MAX
enum { DZRT__PTR, DZRT__ENT, DZRT__VALS, DZRT__SCALE, DZRT__SHIFT, DZRT__PIECES };

/* The layout of `l`'s packed bytes: fills off[] and returns the total (uint64 so that a
 * corrupt record cannot wrap on a 32-bit target). */
uint64_t dzrt__layout(const dzrt_layer *l, uint64_t off[DZRT__PIECES]);
int dzrt__has_bn(const dzrt_layer *l);

/* A packed layer resolved to pointers into the arena. */
typedef struct dzrt__view {
    const uint8_t *ptr;       /* rows + 1 row pointers of ptr_bytes */
    const uint8_t *ent;       /* kept entries of entry_bytes */
    const float *vals;        /* dense: the matrix; shared: the codebook; sparse: a value per entry */
    const float *scale;       /* per output: NULL = 1 */
    const float *shift;       /* per output: NULL = 0 */
} dzrt__view;

void dzrt__view_of(const dzrt_layer *l, const uint8_t *arena, dzrt__view *v);

/* The kernels (kernels.c). Each writes every element of its output. */
void dzrt__conv(const dzrt_op *op, const dzrt__view *v, const float *x, float *y, float *tmp);
void dzrt__linear(const dzrt_op *op, const dzrt__view *v, const float *x, float *y);
void dzrt__pool(const dzrt_pool *p, const float *x, uint32_t c, uint32_t h, uint32_t w, float *y,
                uint32_t yh, uint32_t yw, int relu);
void dzrt__add(const float *a, const float *b, float *y, uint32_t n, int relu);
void dzrt__affine(const dzrt__view *v, const float *x, float *y, uint32_t c, uint32_t hw, int relu);
void dzrt__relu(const float *x, float *y, uint32_t n);
void dzrt__softmax(const float *x, float *y, uint32_t n);

#endif
