#include "vmm/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "devices/device.h"

int read_file(const char *path, const char *what, uint8_t **buf, size_t *len, size_t max,
	      struct kite_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, KITE_EXIT_IMAGE, "%s '%s': %s", what, path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "%s '%s': not a regular file", what, path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "%s '%s' (%lld bytes) is too large for %llu bytes of guest memory",
			       what, path, (long long)st.st_size, (unsigned long long)max);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		close(fd);
		return err_set(err, KITE_EXIT_ERROR, "out of memory reading %s", what);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(b);
			close(fd);
			return err_set(err, KITE_EXIT_IMAGE, "%s '%s': read: %s", what, path, strerror(e));
		}
		got += (size_t)r;
	}
	close(fd);
	*buf = b;
	*len = n;
	return 0;
}

static int load_guest(struct vm *vm, struct kite_err *err)
{
	const struct vm_config *cfg = vm->cfg;
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0;
	struct boot_image bi;
	struct boot_args args = {.cmdline = cfg->cmdline};
	int r = -1;

	if (read_file(cfg->kernel, "kernel", &kernel, &klen, vm->mem.ram_size, err) < 0)
		goto out;
	if (kernel_load(&vm->mem, kernel, klen, &bi, err) < 0) {
		/* Name the file: the loader only knows the bytes. */
		struct kite_err e2 = {0};
		err_set(&e2, err->code, "kernel '%s': %s", cfg->kernel, err->msg);
		*err = e2;
		goto out;
	}
	if (cfg->initrd) {
		if (read_file(cfg->initrd, "initrd", &initrd, &ilen, vm->mem.ram_size, err) < 0)
			goto out;
		if (initrd_place(&vm->mem, &bi, ilen, &args.initrd_gpa, err) < 0) {
			struct kite_err e2 = {0};
			err_set(&e2, err->code, "initrd '%s': %s", cfg->initrd, err->msg);
			*err = e2;
			goto out;
		}
		gmem_write(&vm->mem, args.initrd_gpa, initrd, ilen);
		args.initrd_size = ilen;
	}
	if (acpi_build(&vm->mem, cfg->cpus, &args.rsdp_gpa) < 0) {
		err_set(err, KITE_EXIT_ERROR, "cannot place ACPI tables in guest memory");
		goto out;
	}
	if (boot_info_setup(&vm->mem, &bi, &args, err) < 0)
		goto out;
	if (cpu_write_boot_tables(&vm->mem) < 0) {
		err_set(err, KITE_EXIT_ERROR, "cannot place boot page tables in guest memory");
		goto out;
	}
	vm->boot_mode = bi.mode;
	vm->boot_entry = bi.entry;
	r = 0;
out:
	free(kernel);
	free(initrd);
	return r;
}

static int step(struct vm *vm, int result, const char *what)
{
	if (result < 0)
		return -1;
	log_debug("%s at %llu us", what, (unsigned long long)vm_uptime_us(vm));
	return 0;
}

int machine_run(const struct vm_config *cfg)
{
	struct vm vm;
	vm_init(&vm);
	struct kite_err err = {0};
	int code;

	/* Each step logs its time since exec at --level debug: the start-up profile. */
	vm.cfg = cfg;
	if (step(&vm, kvm_open(&vm, &err), "kvm opened") < 0 ||
	    step(&vm, vm_create(&vm, cfg, &err), "vm created") < 0 ||
	    step(&vm, load_guest(&vm, &err), "guest loaded") < 0 ||
	    step(&vm, vm_memory_wait(&vm, &err), "memory registered") < 0 ||
	    step(&vm, devices_create(&vm, &err), "devices created") < 0 ||
	    step(&vm, vcpus_create(&vm, &err), "vcpus created") < 0 || vcpus_start(&vm, &err) < 0) {
		fprintf(stderr, "kite: error: %s\n", err.msg);
		code = err.code ? err.code : KITE_EXIT_ERROR;
		vm_request_stop(&vm, code, "%s", err.msg);
		vcpus_stop(&vm);
		devices_destroy(&vm);
		vm_destroy(&vm);
		return code;
	}

	pthread_mutex_lock(&vm.stop.lock);
	while (!vm.stop.requested)
		pthread_cond_wait(&vm.stop.cond, &vm.stop.lock);
	pthread_mutex_unlock(&vm.stop.lock);

	vcpus_stop(&vm);
	devices_destroy(&vm);
	code = vm.stop.exit_code;
	if (code == KITE_EXIT_OK)
		log_info("%s", vm.stop.reason);
	else
		log_error("%s", vm.stop.reason);
	vm_destroy(&vm);
	return code;
}
