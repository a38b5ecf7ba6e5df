/* Device registration: each device file declares itself with KITE_DEVICE(); the
 * machine walks the list at start-up. Adding a device touches no other file. */
#ifndef KITE_DEVICE_H
#define KITE_DEVICE_H

#include "util/log.h"
#include "vmm/vm.h"

struct device_desc {
	const char *name;
	/* Claims bus ranges and sets up state. Returns 0 (also when the
	 * configuration leaves the device out) or -1 with err set. */
	int (*create)(struct vm *vm, struct kite_err *err);
	/* Optional: called once after all vCPUs stopped. */
	void (*destroy)(struct vm *vm);
};

#define KITE_DEVICE(ident, ...)                                                         \
	static const struct device_desc ident##_desc __attribute__((used, section("kite_devices"), \
								       aligned(sizeof(void *)))) = \
		__VA_ARGS__

int devices_create(struct vm *vm, struct kite_err *err);
void devices_destroy(struct vm *vm);

#endif
