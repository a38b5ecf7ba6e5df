/* Firecracker's boot-timer device: the guest's init writes the magic byte 123 to
 * 0xC0000000 once it is up, and kite logs how long that took since exec. */
#include <stdio.h>
#include <sys/resource.h>

#include "arch/x86/layout.h"
#include "devices/device.h"

#define BOOT_TIMER_MAGIC 123

static uint64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void boot_timer_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)size;
	struct vm *vm = o;
	if (off != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t us = vm_uptime_us(vm), cpu = cpu_us();
	/* Asked for with --boot-timer, so shown whatever the log level. */
	fprintf(stderr, "kite: Guest-boot-time = %6llu us %llu ms, %6llu CPU us %llu CPU ms\n",
		(unsigned long long)us, (unsigned long long)(us / 1000), (unsigned long long)cpu,
		(unsigned long long)(cpu / 1000));
}

static const struct bus_ops boot_timer_ops = {.write = boot_timer_write};

static int boot_timer_create(struct vm *vm, struct kite_err *err)
{
	if (!vm->cfg->boot_timer)
		return 0;
	if (bus_register(&vm->mmio, LAYOUT_BOOT_TIMER, 0x1000, &boot_timer_ops, vm, "boot-timer") < 0)
		return err_set(err, KITE_EXIT_ERROR, "boot timer: MMIO range busy");
	return 0;
}

KITE_DEVICE(boot_timer, {.name = "boot-timer", .create = boot_timer_create});
