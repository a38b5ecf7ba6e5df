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
