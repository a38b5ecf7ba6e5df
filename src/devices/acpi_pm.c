/* The hardware-reduced ACPI registers the FADT points at: sleep control (S5 =
 * power off) and the reset register. */
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "devices/device.h"

static void acpi_pm_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	(void)o;
	(void)off;
	memset(data, 0, size);
}

static void acpi_pm_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)size;
	struct vm *vm = o;
	uint8_t v = data[0];
	if (off == 0 && (v & ACPI_SLP_EN) && ((v >> 2) & 7) == ACPI_SLP_TYP_S5)
		vm_request_stop(vm, KITE_EXIT_OK, "guest powered off (ACPI S5)");
	else if (off == 1 && v == ACPI_RESET_VALUE)
		vm_request_stop(vm, KITE_EXIT_OK, "guest reset (ACPI reset register)");
}

static const struct bus_ops acpi_pm_ops = {.read = acpi_pm_read, .write = acpi_pm_write};

static int acpi_pm_create(struct vm *vm, struct kite_err *err)
{
	if (bus_register(&vm->pio, PORT_ACPI_SLEEP, 2, &acpi_pm_ops, vm, "acpi-pm") < 0)
		return err_set(err, KITE_EXIT_ERROR, "acpi: port range busy");
	return 0;
}

KITE_DEVICE(acpi_pm, {.name = "acpi-pm", .create = acpi_pm_create});
