/* Host side of the test guests' ucall channel: copy the request out of guest
 * memory once, validate the copy, then act on it. */
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/device.h"
#include "devices/testdev.h"

static void testdev_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	struct vm *vm = o;
	if (off != 0 || size != 4) {
		log_warn("testdev: ignored %u-byte write (ucalls are 4-byte OUTs)", size);
		return;
	}
	uint32_t gpa;
	memcpy(&gpa, data, 4);
	struct ucall uc;
	if (gmem_read(&vm->mem, gpa, &uc, sizeof(uc)) < 0) {
		log_warn("testdev: ucall at 0x%x is outside guest RAM; ignored", gpa);
		return;
	}
	if (uc.magic != UCALL_MAGIC) {
		log_warn("testdev: ucall at 0x%x has bad magic 0x%x; ignored", gpa, uc.magic);
		return;
	}
	uc.file[sizeof(uc.file) - 1] = 0;
	uc.msg[sizeof(uc.msg) - 1] = 0;
	switch (uc.cmd) {
	case UCALL_PRINT:
		fprintf(stderr, "guest: %s\n", uc.msg);
		break;
	case UCALL_ASSERT:
		fprintf(stderr, "kite: guest assertion failed at %s:%u: %s (0x%llx, 0x%llx)\n", uc.file,
			uc.line, uc.msg, (unsigned long long)uc.args[0], (unsigned long long)uc.args[1]);
		vm_request_stop(vm, KITE_EXIT_GUEST_TEST, "guest assertion failed at %s:%u", uc.file,
				uc.line);
		break;
	case UCALL_DONE:
		vm_request_stop(vm, KITE_EXIT_OK, "test guest done");
		break;
	case UCALL_FORBIDDEN_SYSCALL:
		syscall(SYS_getppid);
		fprintf(stderr, "kite: the forbidden system call was allowed (no seccomp filter)\n");
		break;
	default:
		log_warn("testdev: unknown ucall %u; ignored", uc.cmd);
		break;
	}
}

static const struct bus_ops testdev_ops = {.write = testdev_write};

static int testdev_create(struct vm *vm, struct kite_err *err)
{
	if (!vm->cfg->test_device)
		return 0;
	if (bus_register(&vm->pio, PORT_TESTDEV, 4, &testdev_ops, vm, "testdev") < 0)
		return err_set(err, KITE_EXIT_ERROR, "testdev: port range busy");
	return 0;
}

KITE_DEVICE(testdev, {.name = "testdev", .create = testdev_create});
