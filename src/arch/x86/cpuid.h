/* The guest's CPUID: KVM_GET_SUPPORTED_CPUID, normalised per vCPU (APIC ids,
 * topology, hypervisor bit, KVM paravirt leaves). Pure functions: unit-tested
 * without /dev/kvm. */
#ifndef KITE_CPUID_H
#define KITE_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#define CPUID_MAX_ENTRIES 256

struct cpuid_opts {
	unsigned vcpu_id;
	unsigned nr_vcpus;
	bool tsc_deadline; /* KVM_CAP_TSC_DEADLINE_TIMER */
};

/* The KVM paravirt features kite asks the guest to use (0x40000001 EAX). */
#define KITE_KVM_FEATURES                                                         \
	((1u << 0) | (1u << 3) | (1u << 6) | (1u << 7) | (1u << 9) | (1u << 13) | \
	 (1u << 24))
/* clocksource, clocksource2, PV EOI, PV unhalt, PV TLB flush, PV sched yield,
 * stable clock bit */

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned n, uint32_t fn,
				    uint32_t idx);
/* Rewrites entries[0..*n) in place for one vCPU; may append the KVM leaves
 * (never beyond max). Returns 0, or -1 if a required leaf cannot be added. */
int cpuid_normalize(struct kvm_cpuid_entry2 *e, unsigned *n, unsigned max,
		    const struct cpuid_opts *o);

/* The vCPU's identity and the VM's topology only, a part of cpuid_normalize:
 * APIC ids (0x1 EBX[31:24], 0xb/0x1f EDX, 0x8000001e), logical processor
 * counts (0x1 EBX[23:16] and EDX.HTT, 0x4 EAX[31:14], 0x80000008 ECX[15:12,7:0])
 * and the 0xb/0x1f levels. Run again after a CPU template, which cannot
 * change them. */
void cpuid_set_topology(struct kvm_cpuid_entry2 *e, unsigned n, const struct cpuid_opts *o);

#endif
