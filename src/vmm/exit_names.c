#include "vmm/exit_names.h"

#include <linux/kvm.h>

#define N(x) [KVM_EXIT_##x] = "KVM_EXIT_" #x
static const char *const names[] = {
	N(UNKNOWN), N(EXCEPTION), N(IO), N(HYPERCALL), N(DEBUG), N(HLT), N(MMIO),
	N(IRQ_WINDOW_OPEN), N(SHUTDOWN), N(FAIL_ENTRY), N(INTR), N(SET_TPR), N(TPR_ACCESS),
	N(S390_SIEIC), N(S390_RESET), N(DCR), N(NMI), N(INTERNAL_ERROR), N(OSI), N(PAPR_HCALL),
	N(S390_UCONTROL), N(WATCHDOG), N(S390_TSCH), N(EPR), N(SYSTEM_EVENT), N(S390_STSI),
	N(IOAPIC_EOI), N(HYPERV), N(ARM_NISV), N(X86_RDMSR), N(X86_WRMSR), N(DIRTY_RING_FULL),
	N(AP_RESET_HOLD), N(X86_BUS_LOCK), N(XEN), N(RISCV_SBI), N(RISCV_CSR), N(NOTIFY),
};
#undef N

/* The same, short and lowercase: keys in /stats and metric labels. */
static const char *const short_names[] = {
	[KVM_EXIT_UNKNOWN] = "unknown",
	[KVM_EXIT_EXCEPTION] = "exception",
	[KVM_EXIT_IO] = "io",
	[KVM_EXIT_HYPERCALL] = "hypercall",
	[KVM_EXIT_DEBUG] = "debug",
	[KVM_EXIT_HLT] = "hlt",
	[KVM_EXIT_MMIO] = "mmio",
	[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq_window_open",
	[KVM_EXIT_SHUTDOWN] = "shutdown",
	[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
	[KVM_EXIT_INTR] = "intr",
	[KVM_EXIT_SET_TPR] = "set_tpr",
	[KVM_EXIT_TPR_ACCESS] = "tpr_access",
	[KVM_EXIT_S390_SIEIC] = "s390_sieic",
	[KVM_EXIT_S390_RESET] = "s390_reset",
	[KVM_EXIT_DCR] = "dcr",
	[KVM_EXIT_NMI] = "nmi",
	[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
	[KVM_EXIT_OSI] = "osi",
	[KVM_EXIT_PAPR_HCALL] = "papr_hcall",
	[KVM_EXIT_S390_UCONTROL] = "s390_ucontrol",
	[KVM_EXIT_WATCHDOG] = "watchdog",
	[KVM_EXIT_S390_TSCH] = "s390_tsch",
	[KVM_EXIT_EPR] = "epr",
	[KVM_EXIT_SYSTEM_EVENT] = "system_event",
	[KVM_EXIT_S390_STSI] = "s390_stsi",
	[KVM_EXIT_IOAPIC_EOI] = "ioapic_eoi",
	[KVM_EXIT_HYPERV] = "hyperv",
	[KVM_EXIT_ARM_NISV] = "arm_nisv",
	[KVM_EXIT_X86_RDMSR] = "x86_rdmsr",
	[KVM_EXIT_X86_WRMSR] = "x86_wrmsr",
	[KVM_EXIT_DIRTY_RING_FULL] = "dirty_ring_full",
	[KVM_EXIT_AP_RESET_HOLD] = "ap_reset_hold",
	[KVM_EXIT_X86_BUS_LOCK] = "x86_bus_lock",
	[KVM_EXIT_XEN] = "xen",
	[KVM_EXIT_RISCV_SBI] = "riscv_sbi",
	[KVM_EXIT_RISCV_CSR] = "riscv_csr",
	[KVM_EXIT_NOTIFY] = "notify",
};

const char *kvm_exit_short_name(unsigned reason)
{
	if (reason < sizeof(short_names) / sizeof(short_names[0]) && short_names[reason])
		return short_names[reason];
	return "other";
}

const char *kvm_exit_name(unsigned reason)
{
	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "KVM_EXIT_(unknown)";
}

const char *kvm_internal_error_name(unsigned suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "instruction emulation failed";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "event delivery failed";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		return "unexpected hardware exit reason";
	default:
		return "unknown";
	}
}
