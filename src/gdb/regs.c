#include "gdb/regs.h"

#include <string.h>

#define OFF_ST 164    /* after 17 * 8 + 7 * 4 bytes */
#define OFF_FCTRL 244 /* after st0..st7 */
#define OFF_XMM 276   /* after fctrl..fop */
#define OFF_MXCSR 532

int gdb_reg_span(unsigned n, unsigned *off, unsigned *size)
{
	if (n <= GDB_REG_RIP) {
		*off = n * 8;
		*size = 8;
	} else if (n < 24) {
		*off = 136 + (n - GDB_REG_EFLAGS) * 4;
		*size = 4;
	} else if (n < 32) {
		*off = OFF_ST + (n - 24) * 10;
		*size = 10;
	} else if (n < 40) {
		*off = OFF_FCTRL + (n - 32) * 4;
		*size = 4;
	} else if (n < 56) {
		*off = OFF_XMM + (n - 40) * 16;
		*size = 16;
	} else if (n == 56) {
		*off = OFF_MXCSR;
		*size = 4;
	} else {
		return -1;
	}
	return 0;
}

static const struct kvm_segment *seg(const struct kvm_sregs *s, unsigned i)
{
	const struct kvm_segment *order[6] = {&s->cs, &s->ss, &s->ds, &s->es, &s->fs, &s->gs};
	return order[i];
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* gdb wants the full x87 tag word (2 bits per physical register); FXSAVE, and so
 * KVM, keeps only an "in use" bit per register. Rebuild the tag from the value. */
static unsigned x87_tag(const uint8_t *st)
{
	uint64_t mant;
	memcpy(&mant, st, 8);
	unsigned exp = (unsigned)(st[8] | (st[9] & 0x7f) << 8);
	if (exp == 0x7fff)
		return 2; /* special: infinity or NaN */
	if (exp == 0)
		return mant ? 2 : 1; /* denormal or zero */
	return (mant >> 63) ? 0 : 2; /* valid, or unnormal */
}

static uint32_t full_tag(const struct kvm_fpu *f)
{
	unsigned top = (f->fsw >> 11) & 7;
	uint32_t tag = 0;
	for (unsigned phys = 0; phys < 8; phys++) {
		unsigned t = 3; /* empty */
		if (f->ftwx & (1u << phys))
			t = x87_tag(f->fpr[(phys + 8 - top) % 8]); /* fpr[] is in stack order */
		tag |= t << (2 * phys);
	}
	return tag;
}

void gdb_regs_encode(const struct gdb_cpu *c, uint8_t out[GDB_G_SIZE])
{
	const struct kvm_regs *r = &c->regs;
	const uint64_t gpr[17] = {r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp, r->rsp,
				  r->r8,  r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
				  r->rip};
	memset(out, 0, GDB_G_SIZE);
	for (unsigned i = 0; i < 17; i++)
		put64(out + i * 8, gpr[i]);
	put32(out + 136, (uint32_t)r->rflags);
	for (unsigned i = 0; i < 6; i++)
		put32(out + 140 + i * 4, seg(&c->sregs, i)->selector);
	const struct kvm_fpu *f = &c->fpu;
	for (unsigned i = 0; i < 8; i++)
		memcpy(out + OFF_ST + i * 10, f->fpr[i], 10);
	const uint32_t ctl[8] = {f->fcw, f->fsw, full_tag(f), (uint32_t)(f->last_ip >> 32),
				 (uint32_t)f->last_ip, (uint32_t)(f->last_dp >> 32),
				 (uint32_t)f->last_dp, f->last_opcode};
	for (unsigned i = 0; i < 8; i++)
		put32(out + OFF_FCTRL + i * 4, ctl[i]);
	memcpy(out + OFF_XMM, f->xmm, 256);
	put32(out + OFF_MXCSR, f->mxcsr);
}

void gdb_regs_decode(struct gdb_cpu *c, const uint8_t in[GDB_G_SIZE])
{
	struct kvm_regs *r = &c->regs;
	__u64 *gpr[17] = {&r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp,
			     &r->r8,  &r->r9,  &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15,
			     &r->rip};
	for (unsigned i = 0; i < 17; i++)
		*gpr[i] = get64(in + i * 8);
	/* The upper half of RFLAGS is reserved (zero). */
	r->rflags = get32(in + 136);
	struct kvm_fpu *f = &c->fpu;
	for (unsigned i = 0; i < 8; i++)
		memcpy(f->fpr[i], in + OFF_ST + i * 10, 10);
	f->fcw = (uint16_t)get32(in + OFF_FCTRL);
	f->fsw = (uint16_t)get32(in + OFF_FCTRL + 4);
	uint32_t tag = get32(in + OFF_FCTRL + 8);
	f->ftwx = 0;
	for (unsigned phys = 0; phys < 8; phys++)
		if (((tag >> (2 * phys)) & 3) != 3)
			f->ftwx |= (uint8_t)(1u << phys);
	f->last_ip = (uint64_t)get32(in + OFF_FCTRL + 12) << 32 | get32(in + OFF_FCTRL + 16);
	f->last_dp = (uint64_t)get32(in + OFF_FCTRL + 20) << 32 | get32(in + OFF_FCTRL + 24);
	f->last_opcode = (uint16_t)(get32(in + OFF_FCTRL + 28) & 0x7ff);
	memcpy(f->xmm, in + OFF_XMM, 256);
	f->mxcsr = get32(in + OFF_MXCSR);
}

int gdb_reg_write(struct gdb_cpu *c, unsigned n, const uint8_t *val, unsigned size)
{
	unsigned off, want;
	if (gdb_reg_span(n, &off, &want) < 0 || size != want)
		return -1;
	if (n >= GDB_REG_CS && n < GDB_REG_CS + 6)
		return get32(val) == seg(&c->sregs, n - GDB_REG_CS)->selector ? 0 : -1;
	uint8_t g[GDB_G_SIZE];
	gdb_regs_encode(c, g);
	memcpy(g + off, val, size);
	gdb_regs_decode(c, g);
	return 0;
}
