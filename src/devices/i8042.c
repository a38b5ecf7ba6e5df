/* The keyboard controller, as far as a guest needs it to reset the machine:
 * writing 0xFE to the command port pulses the CPU reset line (`reboot=k`). */
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/device.h"

#define I8042_CMD_RESET 0xfe

static void i8042_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	(void)o;
	(void)off;
	/* Status 0: no output waiting, input buffer empty, so the guest's
	 * "wait until the controller is ready" loops end at once. */
	memset(data, 0, size);
}

static void i8042_data_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)o;
	(void)off;
	(void)data;
	(void)size;
}

static void i8042_cmd_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)off;
	(void)size;
	struct vm *vm = o;
	if (data[0] == I8042_CMD_RESET)
		vm_request_stop(vm, KITE_EXIT_OK, "guest reset (i8042)");
}

static const struct bus_ops i8042_data_ops = {.read = i8042_read, .write = i8042_data_write};
static const struct bus_ops i8042_cmd_ops = {.read = i8042_read, .write = i8042_cmd_write};

static int i8042_create(struct vm *vm, struct kite_err *err)
{
	/* 0x60 and 0x64; 0x61 (speaker/PIT gate) is handled in the kernel by KVM's PIT. */
	if (bus_register(&vm->pio, PORT_I8042_DATA, 1, &i8042_data_ops, vm, "i8042-data") < 0 ||
	    bus_register(&vm->pio, PORT_I8042_CMD, 1, &i8042_cmd_ops, vm, "i8042-cmd") < 0)
		return err_set(err, KITE_EXIT_ERROR, "i8042: port range busy");
	return 0;
}

KITE_DEVICE(i8042, {.name = "i8042", .create = i8042_create});
