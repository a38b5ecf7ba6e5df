/* The x86-64 register file as gdb's amd64 target lays it out when the stub sends
 * no target description: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 rip (8 bytes
 * each), eflags cs ss ds es fs gs (4 bytes), st0..st7 (10 bytes), fctrl fstat ftag
 * fiseg fioff foseg fooff fop (4 bytes), xmm0..xmm15 (16 bytes), mxcsr (4 bytes):
 * 57 registers, 536 bytes, little-endian. */
#ifndef KITE_GDB_REGS_H
#define KITE_GDB_REGS_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#define GDB_NUM_REGS 57
#define GDB_G_SIZE 536
#define GDB_REG_RIP 16
#define GDB_REG_EFLAGS 17
#define GDB_REG_CS 18  /* cs ss ds es fs gs: 18..23 */

struct gdb_cpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
};

/* Offset and size of register n in the g layout; -1 for an unknown number. */
int gdb_reg_span(unsigned n, unsigned *off, unsigned *size);
void gdb_regs_encode(const struct gdb_cpu *c, uint8_t out[GDB_G_SIZE]);
/* Takes every register from in except the segment selectors, which only change
 * together with their descriptors: a different selector is ignored here and
 * refused by gdb_reg_write. */
void gdb_regs_decode(struct gdb_cpu *c, const uint8_t in[GDB_G_SIZE]);
/* Writes register n from size bytes (gdb's P packet). -1 for an unknown
 * register, a wrong size, or a segment selector that would change. */
int gdb_reg_write(struct gdb_cpu *c, unsigned n, const uint8_t *val, unsigned size);

#endif
