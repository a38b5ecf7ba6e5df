#include "arch/x86/cpuid.h"

#include <string.h>

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned n, uint32_t fn,
				    uint32_t idx)
{
	for (unsigned i = 0; i < n; i++) {
		if (e[i].function != fn)
			continue;
		if ((e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e[i].index != idx)
			continue;
		return &e[i];
	}
	return NULL;
}

static struct kvm_cpuid_entry2 *get_or_add(struct kvm_cpuid_entry2 *e, unsigned *n,
					   unsigned max, uint32_t fn)
{
	struct kvm_cpuid_entry2 *x = cpuid_find(e, *n, fn, 0);
	if (x)
		return x;
	if (*n >= max)
		return NULL;
	x = &e[(*n)++];
	memset(x, 0, sizeof(*x));
	x->function = fn;
	return x;
}

/* Bits needed to number `count` things: ceil(log2(count)). */
static unsigned order(unsigned count)
{
	unsigned s = 0;
	while ((1u << s) < count)
		s++;
	return s;
}

void cpuid_set_topology(struct kvm_cpuid_entry2 *e, unsigned n, const struct cpuid_opts *o)
{
	unsigned id = o->vcpu_id, cpus = o->nr_vcpus ? o->nr_vcpus : 1;
	unsigned core_bits = order(cpus);

	for (unsigned i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *x = &e[i];
		switch (x->function) {
		case 0x1:
			/* APIC id, logical processor count, CLFLUSH size kept. */
			x->ebx = (id << 24) | ((cpus & 0xff) << 16) | (x->ebx & 0xffff);
			if (cpus > 1)
				x->edx |= 1u << 28; /* HTT: the count in EBX is valid */
			else
				x->edx &= ~(1u << 28);
			break;
		case 0x4:
			/* Cache topology: every vCPU a core of one package, one thread each. */
			if ((x->eax & 0x1f) != 0) {
				x->eax &= 0x3fff;
				x->eax |= ((cpus - 1) & 0x3f) << 26;
				/* threads sharing: L3 (level 3) all, others one */
				if (((x->eax >> 5) & 7) == 3)
					x->eax |= ((cpus - 1) & 0xfff) << 14;
			}
			break;
		case 0xb:
		case 0x1f:
			x->edx = id; /* x2APIC id */
			if (x->index == 0) {
				x->eax = 0; /* SMT: one thread per core */
				x->ebx = 1;
				x->ecx = (1u << 8) | 0;
			} else if (x->index == 1) {
				x->eax = core_bits;
				x->ebx = cpus;
				x->ecx = (2u << 8) | 1;
			} else {
				x->eax = 0;
				x->ebx = 0;
				x->ecx = x->index & 0xff;
			}
			break;
		case 0x80000008:
			/* AMD core count: NC = cpus - 1, ApicIdCoreIdSize. */
			x->ecx = (x->ecx & ~0xf0ffu) | ((cpus - 1) & 0xff) | (core_bits << 12);
			break;
		case 0x8000001e:
			x->eax = id;              /* extended APIC id */
			x->ebx = id & 0xff;       /* compute unit id, one thread per unit */
			x->ecx = 0;               /* node 0, one node */
			x->edx = 0;
			break;
		default:
			break;
		}
	}
}

int cpuid_normalize(struct kvm_cpuid_entry2 *e, unsigned *n, unsigned max,
		    const struct cpuid_opts *o)
{
	cpuid_set_topology(e, *n, o);
	for (unsigned i = 0; i < *n; i++) {
		struct kvm_cpuid_entry2 *x = &e[i];
		switch (x->function) {
		case 0x1:
			x->ecx |= 1u << 31; /* running under a hypervisor */
			x->ecx &= ~(1u << 5); /* no VMX: nested virtualization widens the attack surface */
			/* Newer KVMs report TSC-deadline as supported themselves: set it
			 * only when the in-kernel LAPIC can deliver it. */
			if (o->tsc_deadline)
				x->ecx |= 1u << 24;
			else
				x->ecx &= ~(1u << 24);
			break;
		case 0xa:
			/* No architectural PMU: perf counters in a tenant VM are a side channel
			 * and do not survive migration across hosts. */
			x->eax = x->ebx = x->ecx = x->edx = 0;
			break;
		case 0x80000001:
			x->ecx &= ~(1u << 2); /* no SVM, for the same reason as VMX */
			break;
		default:
			break;
		}
	}

	struct kvm_cpuid_entry2 *sig = get_or_add(e, n, max, 0x40000000);
	if (!sig)
		return -1;
	sig->index = 0;
	sig->flags = 0;
	sig->eax = 0x40000001;
	memcpy(&sig->ebx, "KVMK", 4);
	memcpy(&sig->ecx, "VMKV", 4);
	memcpy(&sig->edx, "M\0\0\0", 4);

	struct kvm_cpuid_entry2 *feat = get_or_add(e, n, max, 0x40000001);
	if (!feat)
		return -1;
	/* Offer what KVM supports of the features kite wants; nothing it does not. */
	uint32_t supported = feat->eax;
	feat->index = 0;
	feat->flags = 0;
	feat->eax = supported & KITE_KVM_FEATURES;
	feat->ebx = feat->ecx = 0;
	feat->edx = 0; /* no KVM_HINTS_REALTIME: vCPUs may be preempted */
	return 0;
}
