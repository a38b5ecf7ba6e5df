/* KVM's side of a VM's state: every vCPU's registers, FPU/XSAVE, XCRs, MSRs,
 * LAPIC, pending events, debug registers, MP state, CPUID and TSC frequency; the
 * irqchip (both PICs, the IOAPIC), the PIT and kvmclock. */
#ifndef KITE_VMSTATE_H
#define KITE_VMSTATE_H

#include <stdbool.h>

#include "snapshot/snapfile.h"
#include "vmm/vm.h"

/* Every vCPU must be parked outside KVM_RUN (paused). */
int vmstate_save(struct vm *vm, struct snap_writer *w, struct kite_err *err);

/* Can this host run the guest the file describes? The CPUID features the guest
 * saw must all be offered here, and its TSC frequency too (or KVM must scale the
 * TSC). Also checks the vCPU count against vm->cfg. KITE_EXIT_IMAGE errors. */
int vmstate_check(struct vm *vm, const struct snap_reader *r, struct kite_err *err);

/* Onto vCPUs vcpus_create() just made (none has run). Checks every section's
 * length first, then sets the state. clock_realtime: advance kvmclock by the
 * wall-clock time since the snapshot (KVM_CLOCK_REALTIME), else carry on from
 * where it stopped. */
int vmstate_restore(struct vm *vm, const struct snap_reader *r, bool clock_realtime,
		    struct kite_err *err);

/* The kvmclock value the file holds (ns), for tests and logs. */
uint64_t vmstate_clock_ns(const struct snap_reader *r);

#endif
