/* KVM state of a VM and its vCPUs into and out of a state file (vmstate.h).
 * Kernel ABI structures go in as they are (fixed layouts), each in a section of
 * its own whose length must match exactly on the way back. */
#include "snapshot/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MAX_MSRS 1024
#define MAX_CPUID 512

static int kvm_fail(struct kite_err *err, const char *what, unsigned cpu)
{
	if (cpu == ~0u)
		return err_set(err, KITE_EXIT_KVM, "%s: %s", what, strerror(errno));
	return err_set(err, KITE_EXIT_KVM, "vCPU %u: %s: %s", cpu, what, strerror(errno));
}

/* ---- MSRs ---- */

static struct kvm_msr_list *msr_index_list(struct vm *vm)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	unsigned n = probe.nmsrs > MAX_MSRS ? MAX_MSRS : probe.nmsrs;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + n * sizeof(l->indices[0]));
	if (!l)
		return NULL;
	l->nmsrs = n;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return NULL;
	}
	return l;
}

/* KVM_GET/SET_MSRS stop at the first MSR they refuse: skip it and go on. Returns
 * how many entries are left in m (the refused ones dropped, order kept). */
static unsigned msrs_xfer(int fd, unsigned long req, struct kvm_msrs *m, unsigned n, unsigned cpu)
{
	unsigned kept = 0, start = 0;
	struct kvm_msrs *q = calloc(1, sizeof(*q) + n * sizeof(q->entries[0]));
	if (!q)
		return 0;
	while (start < n) {
		q->nmsrs = n - start;
		memcpy(q->entries, m->entries + start, (n - start) * sizeof(q->entries[0]));
		int done = ioctl(fd, req, q);
		if (done < 0)
			done = 0;
		memmove(m->entries + kept, q->entries, (size_t)done * sizeof(q->entries[0]));
		kept += (unsigned)done;
		if ((unsigned)done >= n - start)
			break;
		log_debug("vCPU %u: MSR 0x%x %s", cpu, m->entries[start + (unsigned)done].index,
			  req == KVM_GET_MSRS ? "not readable: left out of the snapshot" : "not accepted on restore");
		start += (unsigned)done + 1;
	}
	free(q);
	m->nmsrs = kept;
	return kept;
}

/* A vCPU's CPUID into c (room for MAX_CPUID entries), with c->nent the real
 * count. Kernels differ in whether KVM_GET_CPUID2 writes the count back (Linux
 * 6.1 as shipped by Debian leaves the caller's), so the entries come into a
 * zeroed array and the unused tail (all-zero entries: a real leaf 0 never is)
 * is cut off. */
static int get_cpuid(int fd, struct kvm_cpuid2 *c)
{
	memset(c->entries, 0, MAX_CPUID * sizeof(c->entries[0]));
	c->nent = MAX_CPUID;
	if (ioctl(fd, KVM_GET_CPUID2, c) < 0)
		return -1;
	unsigned n = c->nent <= MAX_CPUID ? c->nent : MAX_CPUID;
	static const struct kvm_cpuid_entry2 zero;
	while (n && memcmp(&c->entries[n - 1], &zero, sizeof(zero)) == 0)
		n--;
	c->nent = n;
	return 0;
}

/* ---- save ---- */

static int xsave_size(struct vm *vm)
{
	int n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

static int save_vcpu(struct vm *vm, struct vcpu *v, const struct kvm_msr_list *list,
		     struct snap_writer *w, struct kite_err *err)
{
	int fd = v->fd;
	unsigned id = v->id;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dbg;
	struct kvm_mp_state mp;
	if (ioctl(fd, KVM_GET_REGS, &regs) < 0)
		return kvm_fail(err, "KVM_GET_REGS", id);
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return kvm_fail(err, "KVM_GET_SREGS", id);
	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return kvm_fail(err, "KVM_GET_LAPIC", id);
	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return kvm_fail(err, "KVM_GET_VCPU_EVENTS", id);
	if (ioctl(fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		return kvm_fail(err, "KVM_GET_DEBUGREGS", id);
	if (ioctl(fd, KVM_GET_MP_STATE, &mp) < 0)
		return kvm_fail(err, "KVM_GET_MP_STATE", id);
	snapw_section(w, "REGS", id, &regs, sizeof(regs));
	snapw_section(w, "SREG", id, &sregs, sizeof(sregs));
	snapw_section(w, "LAPC", id, &lapic, sizeof(lapic));
	snapw_section(w, "EVNT", id, &ev, sizeof(ev));
	snapw_section(w, "DBGR", id, &dbg, sizeof(dbg));
	snapw_section(w, "MPST", id, &mp, sizeof(mp));

	/* FPU and extended state: XSAVE where KVM has it, else the legacy area. */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		int sz = xsave_size(vm);
		void *x = calloc(1, (size_t)sz);
		if (!x)
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		int rc = ioctl(fd, sz > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x);
		if (rc == 0)
			snapw_section(w, "XSAV", id, x, (size_t)sz);
		free(x);
		if (rc < 0)
			return kvm_fail(err, "KVM_GET_XSAVE", id);
	} else {
		struct kvm_fpu fpu;
		if (ioctl(fd, KVM_GET_FPU, &fpu) < 0)
			return kvm_fail(err, "KVM_GET_FPU", id);
		snapw_section(w, "FPU_", id, &fpu, sizeof(fpu));
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		struct kvm_xcrs xcrs;
		if (ioctl(fd, KVM_GET_XCRS, &xcrs) < 0)
			return kvm_fail(err, "KVM_GET_XCRS", id);
		snapw_section(w, "XCRS", id, &xcrs, sizeof(xcrs));
	}

	/* MSRs: every one KVM lists that reads back. */
	unsigned n = list ? list->nmsrs : 0;
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (n ? n : 1) * sizeof(m->entries[0]));
	if (!m)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	for (unsigned i = 0; i < n; i++)
		m->entries[i].index = list->indices[i];
	n = msrs_xfer(fd, KVM_GET_MSRS, m, n, id);
	snapw_begin(w, "MSRS", id);
	snapw_u32(w, n);
	for (unsigned i = 0; i < n; i++) {
		snapw_u32(w, m->entries[i].index);
		snapw_u64(w, m->entries[i].data);
	}
	snapw_end(w);
	free(m);

	/* The CPUID the guest sees, for the compatibility check and to give it back. */
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + MAX_CPUID * sizeof(c->entries[0]));
	if (!c)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	if (get_cpuid(fd, c) < 0) {
		free(c);
		return kvm_fail(err, "KVM_GET_CPUID2", id);
	}
	snapw_section(w, "CPID", id, c->entries, c->nent * sizeof(c->entries[0]));
	free(c);

	int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	snapw_begin(w, "TSCK", id);
	snapw_u32(w, khz > 0 ? (uint32_t)khz : 0);
	snapw_end(w);
	return 0;
}

int vmstate_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	snapw_begin(w, "VCNT", 0);
	snapw_u32(w, vm->nr_vcpus);
	snapw_end(w);

	static const uint32_t chips[] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip chip = {.chip_id = chips[i]};
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return kvm_fail(err, "KVM_GET_IRQCHIP", ~0u);
		snapw_section(w, "IRQC", i, &chip, sizeof(chip));
	}
	struct kvm_pit_state2 pit;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return kvm_fail(err, "KVM_GET_PIT2", ~0u);
	snapw_section(w, "PIT2", 0, &pit, sizeof(pit));

	struct kvm_msr_list *list = msr_index_list(vm);
	if (!list)
		log_warn("snapshot: KVM lists no MSRs (%s): none saved", strerror(errno));
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (save_vcpu(vm, &vm->vcpus[i], list, w, err) < 0) {
			free(list);
			return -1;
		}
	free(list);

	/* kvmclock last: the guest's time as it stands now, paused. */
	struct kvm_clock_data clk;
	memset(&clk, 0, sizeof(clk));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return kvm_fail(err, "KVM_GET_CLOCK", ~0u);
	snapw_begin(w, "CLCK", 0);
	snapw_u64(w, clk.clock);
	snapw_u32(w, clk.flags);
	snapw_u64(w, clk.realtime);
	snapw_end(w);
	return 0;
}

uint64_t vmstate_clock_ns(const struct snap_reader *r)
{
	struct snap_cursor c;
	if (!snapr_find(r, "CLCK", 0, &c))
		return 0;
	return snapc_u64(&c);
}

/* ---- check ---- */

/* A section that must be exactly n bytes. */
static int get_raw(const struct snap_reader *r, const char *tag, uint32_t inst, void *dst, size_t n,
		   struct kite_err *err)
{
	struct snap_cursor c;
	if (!snapr_find(r, tag, inst, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no %.4s section for %u", tag, inst);
	if (c.len != n)
		return err_set(err, KITE_EXIT_IMAGE, "snapshot's %.4s section %u is %zu bytes, not %zu", tag, inst,
			       c.len, n);
	snapc_bytes(&c, dst, n);
	return 0;
}

/* CPUID feature words whose set bits the host must offer too. Bits KVM or kite
 * make up for every guest (hypervisor, TSC deadline, OSXSAVE and OSPKE, which
 * follow the guest's CR4) are not features of the host. */
static const struct {
	uint32_t leaf, sub;
	int reg; /* 0 eax 1 ebx 2 ecx 3 edx */
	uint32_t ignore;
	const char *name;
} features[] = {
	{0x1, 0, 2, (1u << 31) | (1u << 27) | (1u << 24), "1.ECX"},
	{0x1, 0, 3, 0, "1.EDX"},
	{0x7, 0, 1, 0, "7.0.EBX"},
	{0x7, 0, 2, 1u << 4, "7.0.ECX"},
	{0x7, 0, 3, 0, "7.0.EDX"},
	{0xd, 1, 0, 0, "0xd.1.EAX"},
	{0x80000001, 0, 2, 0, "0x80000001.ECX"},
	{0x80000001, 0, 3, 0, "0x80000001.EDX"},
};

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *e, unsigned n, uint32_t leaf,
						 uint32_t sub)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == leaf &&
		    (!(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e[i].index == sub))
			return &e[i];
	return NULL;
}

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, int reg)
{
	return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

static int check_vcpu(struct vm *vm, const struct snap_reader *r, uint32_t id, struct kvm_cpuid2 *host,
		      struct kite_err *err);

int vmstate_check(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	struct snap_cursor c;
	if (!snapr_find(r, "VCNT", 0, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no vCPU count");
	uint32_t n = snapc_u32(&c);
	if (!snapc_done(&c) || n == 0 || n != vm->cfg->cpus)
		return err_set(err, KITE_EXIT_IMAGE, "snapshot holds %u vCPUs, the VM has %u", n, vm->cfg->cpus);
	/* What this host offers is what a vCPU made here for the same configuration
	 * (template included) sees: its CPUID before the snapshot's replaces it. */
	struct kvm_cpuid2 *host = calloc(1, sizeof(*host) + MAX_CPUID * sizeof(host->entries[0]));
	if (!host)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	int rc = 0;
	for (uint32_t id = 0; id < n && rc == 0; id++)
		rc = check_vcpu(vm, r, id, host, err);
	free(host);
	return rc;
}

static int check_vcpu(struct vm *vm, const struct snap_reader *r, uint32_t id, struct kvm_cpuid2 *host,
		      struct kite_err *err)
{
	struct snap_cursor c;
	if (id >= vm->nr_vcpus || get_cpuid(vm->vcpus[id].fd, host) < 0)
		return kvm_fail(err, "KVM_GET_CPUID2", id);
	if (!snapr_find(r, "CPID", id, &c) || c.len % sizeof(struct kvm_cpuid_entry2) ||
	    c.len / sizeof(struct kvm_cpuid_entry2) > MAX_CPUID)
		return err_set(err, KITE_EXIT_IMAGE, "snapshot's CPUID of vCPU %u is missing or malformed", id);
	unsigned ne = (unsigned)(c.len / sizeof(struct kvm_cpuid_entry2));
	struct kvm_cpuid_entry2 *e = calloc(ne ? ne : 1, sizeof(*e));
	if (!e)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	snapc_bytes(&c, e, c.len);
	int rc = 0;
	for (size_t f = 0; f < sizeof(features) / sizeof(features[0]) && rc == 0; f++) {
		const struct kvm_cpuid_entry2 *g = cpuid_find(e, ne, features[f].leaf, features[f].sub);
		if (!g)
			continue;
		const struct kvm_cpuid_entry2 *h = cpuid_find(host->entries, host->nent, features[f].leaf,
							      features[f].sub);
		uint32_t want = cpuid_reg(g, features[f].reg) & ~features[f].ignore;
		uint32_t have = h ? cpuid_reg(h, features[f].reg) : 0;
		uint32_t missing = want & ~have;
		if (missing)
			rc = err_set(err, KITE_EXIT_IMAGE,
				     "this host cannot offer CPUID %s bit %d, which the guest saw (features "
				     "0x%08x missing; restore on a host with them, or give the guest a CPU "
				     "template both hosts satisfy)",
				     features[f].name, __builtin_ctz(missing), missing);
	}
	free(e);
	if (rc < 0)
		return -1;
	if (!snapr_find(r, "TSCK", id, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no TSC frequency for vCPU %u", id);
	uint32_t khz = snapc_u32(&c);
	if (!snapc_done(&c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot's TSC frequency of vCPU %u is malformed", id);
	int here = ioctl(vm->vcpus[id].fd, KVM_GET_TSC_KHZ, 0);
	if (khz && here > 0 && (uint32_t)here != khz &&
	    ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) <= 0)
		return err_set(err, KITE_EXIT_IMAGE,
			       "the guest's TSC runs at %u kHz, this host's at %d kHz, and this KVM cannot "
			       "scale it (no KVM_CAP_TSC_CONTROL)",
			       khz, here);
	return 0;
}

/* ---- restore ---- */

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dbg;
	struct kvm_mp_state mp;
	struct kvm_xcrs xcrs;
	bool has_xcrs;
	void *xsave;        /* or fpu */
	size_t xsave_len;
	struct kvm_fpu fpu;
	bool has_fpu;
	struct kvm_msrs *msrs;
	struct kvm_cpuid2 *cpuid;
	uint32_t tsc_khz;
};

static void vcpu_state_free(struct vcpu_state *s)
{
	free(s->xsave);
	free(s->msrs);
	free(s->cpuid);
}

/* Everything of one vCPU read and checked before anything is set. */
static int read_vcpu(struct vm *vm, const struct snap_reader *r, unsigned id, struct vcpu_state *s,
		     struct kite_err *err)
{
	if (get_raw(r, "REGS", id, &s->regs, sizeof(s->regs), err) < 0 ||
	    get_raw(r, "SREG", id, &s->sregs, sizeof(s->sregs), err) < 0 ||
	    get_raw(r, "LAPC", id, &s->lapic, sizeof(s->lapic), err) < 0 ||
	    get_raw(r, "EVNT", id, &s->ev, sizeof(s->ev), err) < 0 ||
	    get_raw(r, "DBGR", id, &s->dbg, sizeof(s->dbg), err) < 0 ||
	    get_raw(r, "MPST", id, &s->mp, sizeof(s->mp), err) < 0)
		return -1;
	struct snap_cursor c;
	if (snapr_find(r, "XCRS", id, &c)) {
		if (get_raw(r, "XCRS", id, &s->xcrs, sizeof(s->xcrs), err) < 0)
			return -1;
		if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
			return err_set(err, KITE_EXIT_IMAGE, "snapshot: vCPU %u has %u XCRs", id, s->xcrs.nr_xcrs);
		s->has_xcrs = true;
	}
	if (snapr_find(r, "XSAV", id, &c)) {
		size_t want = (size_t)xsave_size(vm);
		if (c.len != sizeof(struct kvm_xsave) && c.len != want)
			return err_set(err, KITE_EXIT_IMAGE,
				       "snapshot: vCPU %u's XSAVE area is %zu bytes; this host's is %zu", id, c.len,
				       want);
		s->xsave_len = want;
		s->xsave = calloc(1, want);
		if (!s->xsave)
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		snapc_bytes(&c, s->xsave, c.len);
	} else if (get_raw(r, "FPU_", id, &s->fpu, sizeof(s->fpu), err) < 0) {
		return -1;
	} else {
		s->has_fpu = true;
	}
	if (!snapr_find(r, "MSRS", id, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no MSRs for vCPU %u", id);
	uint32_t n = snapc_u32(&c);
	if (n > MAX_MSRS || c.len != 4 + (size_t)n * 12)
		return err_set(err, KITE_EXIT_IMAGE, "snapshot: vCPU %u's MSR list is malformed", id);
	s->msrs = calloc(1, sizeof(*s->msrs) + (n ? n : 1) * sizeof(s->msrs->entries[0]));
	if (!s->msrs)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	s->msrs->nmsrs = n;
	for (uint32_t i = 0; i < n; i++) {
		s->msrs->entries[i].index = snapc_u32(&c);
		s->msrs->entries[i].data = snapc_u64(&c);
	}
	if (!snapr_find(r, "CPID", id, &c) || c.len % sizeof(struct kvm_cpuid_entry2) ||
	    c.len / sizeof(struct kvm_cpuid_entry2) > MAX_CPUID || c.len == 0)
		return err_set(err, KITE_EXIT_IMAGE, "snapshot's CPUID of vCPU %u is missing or malformed", id);
	unsigned ne = (unsigned)(c.len / sizeof(struct kvm_cpuid_entry2));
	s->cpuid = calloc(1, sizeof(*s->cpuid) + ne * sizeof(s->cpuid->entries[0]));
	if (!s->cpuid)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	s->cpuid->nent = ne;
	snapc_bytes(&c, s->cpuid->entries, c.len);
	if (!snapr_find(r, "TSCK", id, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no TSC frequency for vCPU %u", id);
	s->tsc_khz = snapc_u32(&c);
	return 0;
}

static int put_vcpu(struct vm *vm, struct vcpu *v, struct vcpu_state *s, struct kite_err *err)
{
	int fd = v->fd;
	unsigned id = v->id;
	if (ioctl(fd, KVM_SET_CPUID2, s->cpuid) < 0)
		return kvm_fail(err, "KVM_SET_CPUID2 (the snapshot's CPUID)", id);
	int here = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	if (s->tsc_khz && here > 0 && (uint32_t)here != s->tsc_khz &&
	    ioctl(fd, KVM_SET_TSC_KHZ, (unsigned long)s->tsc_khz) < 0)
		return err_set(err, KITE_EXIT_IMAGE, "vCPU %u: cannot run the TSC at the guest's %u kHz: %s", id,
			       s->tsc_khz, strerror(errno));
	if (ioctl(fd, KVM_SET_SREGS, &s->sregs) < 0)
		return kvm_fail(err, "KVM_SET_SREGS", id);
	if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
		return kvm_fail(err, "KVM_SET_REGS", id);
	if (s->xsave && ioctl(fd, KVM_SET_XSAVE, s->xsave) < 0)
		return kvm_fail(err, "KVM_SET_XSAVE", id);
	if (s->has_fpu && ioctl(fd, KVM_SET_FPU, &s->fpu) < 0)
		return kvm_fail(err, "KVM_SET_FPU", id);
	if (s->has_xcrs && ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
	    ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
		return kvm_fail(err, "KVM_SET_XCRS", id);
	/* The LAPIC before the MSRs: the TSC deadline only sticks in deadline mode. */
	if (ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0)
		return kvm_fail(err, "KVM_SET_LAPIC", id);
	unsigned want = s->msrs->nmsrs;
	unsigned got = msrs_xfer(fd, KVM_SET_MSRS, s->msrs, want, id);
	if (got < want)
		log_info("vCPU %u: %u of %u saved MSRs not accepted by this host's KVM", id, want - got, want);
	if (ioctl(fd, KVM_SET_MP_STATE, &s->mp) < 0)
		return kvm_fail(err, "KVM_SET_MP_STATE", id);
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &s->ev) < 0)
		return kvm_fail(err, "KVM_SET_VCPU_EVENTS", id);
	if (ioctl(fd, KVM_SET_DEBUGREGS, &s->dbg) < 0)
		return kvm_fail(err, "KVM_SET_DEBUGREGS", id);
	return 0;
}

int vmstate_restore(struct vm *vm, const struct snap_reader *r, bool clock_realtime,
		    struct kite_err *err)
{
	if (vmstate_check(vm, r, err) < 0)
		return -1;
	struct kvm_irqchip chips[3];
	struct kvm_pit_state2 pit;
	static const uint32_t ids[] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
	for (unsigned i = 0; i < 3; i++) {
		if (get_raw(r, "IRQC", i, &chips[i], sizeof(chips[i]), err) < 0)
			return -1;
		if (chips[i].chip_id != ids[i])
			return err_set(err, KITE_EXIT_IMAGE, "snapshot: irqchip %u has id %u", i, chips[i].chip_id);
	}
	if (get_raw(r, "PIT2", 0, &pit, sizeof(pit), err) < 0)
		return -1;
	struct snap_cursor c;
	if (!snapr_find(r, "CLCK", 0, &c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot has no kvmclock");
	struct kvm_clock_data clk;
	memset(&clk, 0, sizeof(clk));
	clk.clock = snapc_u64(&c);
	uint32_t flags = snapc_u32(&c);
	clk.realtime = snapc_u64(&c);
	if (!snapc_done(&c))
		return err_set(err, KITE_EXIT_IMAGE, "snapshot's kvmclock section is malformed");

	struct vcpu_state *st = calloc(vm->nr_vcpus, sizeof(*st));
	if (!st)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	int rc = 0;
	for (unsigned i = 0; i < vm->nr_vcpus && rc == 0; i++)
		rc = read_vcpu(vm, r, i, &st[i], err);
	/* Everything read and checked; now set it. */
	for (unsigned i = 0; i < 3 && rc == 0; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			rc = kvm_fail(err, "KVM_SET_IRQCHIP", ~0u);
	if (rc == 0 && ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		rc = kvm_fail(err, "KVM_SET_PIT2", ~0u);
	for (unsigned i = 0; i < vm->nr_vcpus && rc == 0; i++)
		rc = put_vcpu(vm, &vm->vcpus[i], &st[i], err);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_state_free(&st[i]);
	free(st);
	if (rc < 0)
		return -1;
	/* The guest's clock carries on from where it stopped, unless asked to
	 * catch up with the wall clock (and the snapshot knows when it was). */
	if (clock_realtime && (flags & KVM_CLOCK_REALTIME))
		clk.flags = KVM_CLOCK_REALTIME;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0) {
		if (!clk.flags)
			return kvm_fail(err, "KVM_SET_CLOCK", ~0u);
		log_warn("KVM_SET_CLOCK with the wall clock: %s; the guest's clock carries on instead",
			 strerror(errno));
		clk.flags = 0;
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
			return kvm_fail(err, "KVM_SET_CLOCK", ~0u);
	}
	return 0;
}
