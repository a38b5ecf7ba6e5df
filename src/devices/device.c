#include "devices/device.h"

extern const struct device_desc __start_kite_devices[];
extern const struct device_desc __stop_kite_devices[];

int devices_create(struct vm *vm, struct kite_err *err)
{
	for (const struct device_desc *d = __start_kite_devices; d < __stop_kite_devices; d++) {
		if (d->create(vm, err) < 0) {
			if (!err->code)
				err_set(err, KITE_EXIT_ERROR, "device %s: setup failed", d->name);
			return -1;
		}
	}
	return 0;
}

void devices_destroy(struct vm *vm)
{
	for (const struct device_desc *d = __start_kite_devices; d < __stop_kite_devices; d++)
		if (d->destroy)
			d->destroy(vm);
}

int devices_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	for (const struct device_desc *d = __start_kite_devices; d < __stop_kite_devices; d++)
		if (d->save && d->save(vm, w, err) < 0) {
			if (!err->code)
				err_set(err, KITE_EXIT_ERROR, "device %s: cannot save its state", d->name);
			return -1;
		}
	return 0;
}

int devices_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	for (const struct device_desc *d = __start_kite_devices; d < __stop_kite_devices; d++)
		if (d->restore && d->restore(vm, r, err) < 0) {
			if (!err->code)
				err_set(err, KITE_EXIT_IMAGE, "device %s: cannot restore its state", d->name);
			return -1;
		}
	return 0;
}
