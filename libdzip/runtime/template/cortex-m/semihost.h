/* Output through semihosting (startup.c): QEMU's -semihosting, or a debug probe's. */
#ifndef DZ_SEMIHOST_H
#define DZ_SEMIHOST_H
int dz_semihost(int op, const void *arg);
void dz_puts(const char *s);
void dz_exit(int status);
#endif
