/* Device registration: each device file declares itself with KITE_DEVICE(); the
 * machine walks the list at start-up. Adding a device touches no other file. */
#ifndef KITE_DEVICE_H
#define KITE_DEVICE_H

#include "util/log.h"
#include "vmm/vm.h"

struct snap_writer;
struct snap_reader;

struct device_desc {
	const char *name;
	/* Claims bus ranges and sets up state. Returns 0 (also when the
	 * configuration leaves the device out) or -1 with err set. */
	int (*create)(struct vm *vm, struct kite_err *err);
	/* Optional: called once after all vCPUs stopped. */
	void (*destroy)(struct vm *vm);
	/* Snapshots. save: the device's state into sections of its own (the VM is
	 * paused, no vCPU runs). restore: onto the device create() just made for
	 * the same configuration, before any vCPU runs; the file was checked whole
	 * but its values were not: check each against what the device accepts, and
	 * refuse (err, KITE_EXIT_IMAGE) rather than half-restore. A device with state
	 * and no hooks refuses in save (a clear error) until it has them. */
	int (*save)(struct vm *vm, struct snap_writer *w, struct kite_err *err);
	int (*restore)(struct vm *vm, const struct snap_reader *r, struct kite_err *err);
};

#define KITE_DEVICE(ident, ...)                                                         \
	static const struct device_desc ident##_desc __attribute__((used, section("kite_devices"), \
								       aligned(sizeof(void *)))) = \
		__VA_ARGS__

int devices_create(struct vm *vm, struct kite_err *err);
/* Every device's save / restore hook in registration order. */
int devices_save(struct vm *vm, struct snap_writer *w, struct kite_err *err);
int devices_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err);
void devices_destroy(struct vm *vm);

#endif
