/* x86 vCPU state at power-on: CPUID, boot MSRs, FPU, LAPIC LINT pins, and the
 * registers the boot protocol asks for (64-bit long mode or 32-bit PVH). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/template.h"
#include "vmm/vm.h"

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL
#define X86_CR0_NE 0x20ULL
#define X86_CR0_PG 0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define SEL_TSS 0x20

static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

static const uint16_t gdt_flags[] = {0, 0xc09b, 0xa09b, 0xc093, 0x808b};

int cpu_write_boot_tables(struct gmem *m)
{
	uint64_t gdt[5];
	for (int i = 0; i < 5; i++)
		gdt[i] = i ? gdt_entry(gdt_flags[i], 0, 0xfffff) : 0;
	if (gmem_write(m, LAYOUT_GDT, gdt, sizeof(gdt)) < 0)
		return -1;
	uint64_t idt = 0;
	if (gmem_write(m, LAYOUT_IDT, &idt, sizeof(idt)) < 0)
		return -1;

	/* Identity map of the first 4 GiB with 2 MiB pages: the kernel, zero page,
	 * command line and initrd are all reachable whatever the RAM size. */
	uint64_t *pml4 = gmem_ptr(m, LAYOUT_PML4, 4096);
	uint64_t *pdpt = gmem_ptr(m, LAYOUT_PDPT, 4096);
	uint64_t *pd = gmem_ptr(m, LAYOUT_PD, 4096 * LAYOUT_PD_PAGES);
	if (!pml4 || !pdpt || !pd)
		return -1;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = LAYOUT_PDPT | 0x3;
	for (uint64_t i = 0; i < LAYOUT_PD_PAGES; i++)
		pdpt[i] = (LAYOUT_PD + i * 4096) | 0x3;
	for (uint64_t i = 0; i < 512 * LAYOUT_PD_PAGES; i++)
		pd[i] = (i << 21) | 0x83;
	return 0;
}

static struct kvm_segment seg_from_gdt(unsigned index)
{
	uint16_t f = gdt_flags[index];
	struct kvm_segment s = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = (uint16_t)(index * 8),
		.type = f & 0xf,
		.present = (f >> 7) & 1,
		.dpl = (f >> 5) & 3,
		.db = (f >> 14) & 1,
		.s = (f >> 4) & 1,
		.l = (f >> 13) & 1,
		.g = (f >> 15) & 1,
	};
	return s;
}

static int setup_cpuid(struct vm *vm, struct vcpu *v, struct kite_err *err)
{
	const struct kvm_cpuid2 *sup = vm->supported_cpuid;
	const struct cpu_template *t = vm->cfg->cpu_template;
	unsigned max = sup->nent + 4 + (t ? t->nr_cpuid : 0), n = sup->nent;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(c->entries[0]));
	if (!c)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	memcpy(c->entries, sup->entries, n * sizeof(c->entries[0]));
	struct cpuid_opts o = {.vcpu_id = v->id, .nr_vcpus = vm->cfg->cpus,
			       .tsc_deadline = vm->tsc_deadline};
	char msg[400];
	int r = cpuid_build(c->entries, &n, max, &o, t, msg, sizeof(msg));
	c->nent = n;
	if (r < 0)
		err_set(err, t ? KITE_EXIT_USAGE : KITE_EXIT_KVM, "%s%s", t ? "CPU template: " : "", msg);
	else if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		r = err_set(err, KITE_EXIT_KVM, "vCPU %u: KVM_SET_CPUID2%s: %s", v->id,
			    t ? " (with the CPU template)" : "", strerror(errno));
	else if (v->id == 0)
		template_warn_host(t);
	free(c);
	return r;
}

/* The template's MSR modifiers on top of the value the vCPU has now (kite's
 * boot values included). */
static int setup_template_msrs(struct vm *vm, struct vcpu *v, struct kite_err *err)
{
	const struct cpu_template *t = vm->cfg->cpu_template;
	for (unsigned i = 0; t && i < t->nr_msr; i++) {
		const struct tmpl_msr *m = &t->msr[i];
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} q;
		memset(&q, 0, sizeof(q));
		q.hdr.nmsrs = 1;
		q.e.index = m->addr;
		if (ioctl(v->fd, KVM_GET_MSRS, &q) != 1)
			return err_set(err, KITE_EXIT_USAGE, "CPU template: MSR 0x%x: this host's KVM has no such MSR",
				       m->addr);
		q.e.data = (q.e.data & ~m->mask) | m->value;
		if (ioctl(v->fd, KVM_SET_MSRS, &q) != 1)
			return err_set(err, KITE_EXIT_USAGE,
				       "CPU template: this host's KVM refuses MSR 0x%x = 0x%llx", m->addr,
				       (unsigned long long)q.e.data);
	}
	return 0;
}

static void setup_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t data; } boot[] = {
		{0x174, 0}, {0x175, 0}, {0x176, 0},          /* SYSENTER_CS/ESP/EIP */
		{0xc0000081, 0}, {0xc0000082, 0}, {0xc0000083, 0}, /* STAR, LSTAR, CSTAR */
		{0xc0000084, 0}, {0xc0000102, 0},            /* SYSCALL_MASK, KERNEL_GS_BASE */
		{0x10, 0},                                   /* TSC */
		{0x1a0, 1},                                  /* MISC_ENABLE: fast strings */
		{0x2ff, (1 << 11) | 6},                      /* MTRR default type: enabled, WB */
	};
	const unsigned n = sizeof(boot) / sizeof(boot[0]);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(boot) / sizeof(boot[0])];
	} msrs;
	/* KVM_SET_MSRS stops at the first MSR it refuses; skip that one and go on, so
	 * a host lacking one optional MSR still boots. */
	unsigned start = 0;
	while (start < n) {
		memset(&msrs, 0, sizeof(msrs));
		msrs.hdr.nmsrs = n - start;
		for (unsigned i = start; i < n; i++) {
			msrs.e[i - start].index = boot[i].index;
			msrs.e[i - start].data = boot[i].data;
		}
		int done = ioctl(v->fd, KVM_SET_MSRS, &msrs);
		if (done < 0)
			done = 0;
		if ((unsigned)done >= n - start)
			break;
		log_debug("vCPU %u: MSR 0x%x not accepted", v->id, boot[start + (unsigned)done].index);
		start += (unsigned)done + 1;
	}
}

static int setup_lapic(struct vcpu *v, struct kite_err *err)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return err_set(err, KITE_EXIT_KVM, "vCPU %u: KVM_GET_LAPIC: %s", v->id, strerror(errno));
	uint32_t lint0, lint1;
	memcpy(&lint0, l.regs + 0x350, 4);
	memcpy(&lint1, l.regs + 0x360, 4);
	lint0 = (lint0 & ~0x700u) | (7u << 8); /* ExtINT: the PIC's output */
	lint1 = (lint1 & ~0x700u) | (4u << 8); /* NMI */
	memcpy(l.regs + 0x350, &lint0, 4);
	memcpy(l.regs + 0x360, &lint1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0)
		return err_set(err, KITE_EXIT_KVM, "vCPU %u: KVM_SET_LAPIC: %s", v->id, strerror(errno));
	return 0;
}

static int setup_boot_regs(struct vm *vm, struct vcpu *v, struct kite_err *err)
{
	struct kvm_sregs sr;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_GET_SREGS: %s", strerror(errno));
	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 2;
	r.rip = vm->boot_entry;
	struct kvm_segment data = seg_from_gdt(SEL_DATA / 8), tss = seg_from_gdt(SEL_TSS / 8);
	sr.gdt.base = LAYOUT_GDT;
	sr.gdt.limit = 5 * 8 - 1;
	sr.idt.base = LAYOUT_IDT;
	sr.idt.limit = 7;
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
	sr.tr = tss;
	if (vm->boot_mode == BOOT_PVH) {
		sr.cs = seg_from_gdt(SEL_CODE32 / 8);
		sr.cr0 = X86_CR0_PE | X86_CR0_ET;
		sr.cr4 = 0;
		sr.efer = 0;
		r.rbx = LAYOUT_PVH_INFO;
	} else {
		sr.cs = seg_from_gdt(SEL_CODE64 / 8);
		sr.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
		sr.cr3 = LAYOUT_PML4;
		sr.cr4 = X86_CR4_PAE;
		sr.efer = EFER_LME | EFER_LMA;
		r.rsi = LAYOUT_ZERO_PAGE;
		r.rsp = r.rbp = LAYOUT_BOOT_STACK;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_SET_SREGS: %s", strerror(errno));
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_SET_REGS: %s", strerror(errno));
	return 0;
}

int cpu_setup(struct vm *vm, struct vcpu *v, struct kite_err *err)
{
	if (setup_cpuid(vm, v, err) < 0)
		return -1;
	setup_msrs(v);
	if (setup_template_msrs(vm, v, err) < 0)
		return -1;
	struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return err_set(err, KITE_EXIT_KVM, "vCPU %u: KVM_SET_FPU: %s", v->id, strerror(errno));
	if (setup_lapic(v, err) < 0)
		return -1;
	/* Application processors wait in INIT for the guest's SIPI; only the BSP
	 * starts at the kernel entry. */
	if (v->id == 0)
		return setup_boot_regs(vm, v, err);
	return 0;
}

void cpu_dump_regs(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(stderr, "kite: vCPU %u: registers unavailable: %s\n", v->id, strerror(errno));
		return;
	}
	fprintf(stderr,
		"kite: vCPU %u registers:\n"
		"  rip=%016llx rsp=%016llx rbp=%016llx rflags=%016llx\n"
		"  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"  rsi=%016llx rdi=%016llx r8 =%016llx r9 =%016llx\n"
		"  r10=%016llx r11=%016llx r12=%016llx r13=%016llx\n"
		"  r14=%016llx r15=%016llx\n"
		"  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx\n"
		"  cs=%04x (base %llx l=%u db=%u) ss=%04x ds=%04x\n",
		v->id, r.rip, r.rsp, r.rbp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi,
		r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3, s.cr4,
		s.efer, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector, s.ds.selector);
}
