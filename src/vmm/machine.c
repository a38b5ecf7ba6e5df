#include "vmm/machine.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "devices/device.h"

int map_file(const char *path, const char *what, struct mapped_file *f, uint64_t max,
	     struct kite_err *err)
{
	memset(f, 0, sizeof(*f));
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
	if (st.st_size == 0) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "%s '%s': file is empty", what, path);
	}
	/* Mapped, not read: the bytes are copied once, straight into guest RAM. */
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return err_set(err, KITE_EXIT_IMAGE, "%s '%s': %s", what, path, strerror(e));
	f->data = p;
	f->len = (size_t)st.st_size;
	return 0;
}

void unmap_file(struct mapped_file *f)
{
	if (f->data)
		munmap((void *)f->data, f->len);
	memset(f, 0, sizeof(*f));
}

/* The kernel and initrd, opened before KVM so a wrong path is reported first. */
static int open_images(const struct vm_config *cfg, struct mapped_file *kernel,
		       struct mapped_file *initrd, struct kite_err *err)
{
	uint64_t ram = cfg->mem_mib << 20;
	if (map_file(cfg->kernel, "kernel", kernel, ram, err) < 0)
		return -1;
	if (cfg->initrd && map_file(cfg->initrd, "initrd", initrd, ram, err) < 0)
		return -1;
	return 0;
}

static int load_guest(struct vm *vm, const struct mapped_file *kernel,
		      const struct mapped_file *initrd, struct kite_err *err)
{
	const struct vm_config *cfg = vm->cfg;
	struct boot_image bi;
	struct boot_args args = {.cmdline = cfg->cmdline};

	if (kernel_load(&vm->mem, kernel->data, kernel->len, &bi, err) < 0) {
		/* Name the file: the loader only knows the bytes. */
		struct kite_err e2 = {0};
		err_set(&e2, err->code, "kernel '%s': %s", cfg->kernel, err->msg);
		*err = e2;
		return -1;
	}
	if (initrd->data) {
		if (initrd_place(&vm->mem, &bi, initrd->len, &args.initrd_gpa, err) < 0) {
			struct kite_err e2 = {0};
			err_set(&e2, err->code, "initrd '%s': %s", cfg->initrd, err->msg);
			*err = e2;
			return -1;
		}
		gmem_write(&vm->mem, args.initrd_gpa, initrd->data, initrd->len);
		args.initrd_size = initrd->len;
	}
	if (acpi_build(&vm->mem, cfg->cpus, &args.rsdp_gpa) < 0)
		return err_set(err, KITE_EXIT_ERROR, "cannot place ACPI tables in guest memory");
	if (boot_info_setup(&vm->mem, &bi, &args, err) < 0)
		return -1;
	if (cpu_write_boot_tables(&vm->mem) < 0)
		return err_set(err, KITE_EXIT_ERROR, "cannot place boot page tables in guest memory");
	vm->boot_mode = bi.mode;
	vm->boot_entry = bi.entry;
	return 0;
}

/* SIGINT, SIGTERM and SIGHUP stop the VM cleanly (terminal restored, devices
 * closed) with the shell's 128+signal exit code. They are blocked in every thread
 * and taken here with sigwait, so no handler runs in a vCPU or device context. */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

static void stop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (unsigned i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(set, stop_signals[i]);
}

static void *signal_thread(void *arg)
{
	struct vm *vm = arg;
	sigset_t set;
	stop_signal_set(&set);
	while (!vm_stopping(vm)) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		vm_request_stop(vm, 128 + sig, "stopped by signal %s", strsignal(sig));
	}
	return NULL;
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
	struct mapped_file kernel = {0}, initrd = {0};
	int code;
	sigset_t sigs;
	stop_signal_set(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	pthread_t sig_thread;
	bool sig_started = pthread_create(&sig_thread, NULL, signal_thread, &vm) == 0;

	/* Each step logs its time since exec at --level debug: the start-up profile. */
	vm.cfg = cfg;
	if (step(&vm, open_images(cfg, &kernel, &initrd, &err), "images opened") < 0 ||
	    step(&vm, kvm_open(&vm, &err), "kvm opened") < 0 ||
	    step(&vm, vm_create(&vm, cfg, &err), "vm created") < 0 ||
	    step(&vm, load_guest(&vm, &kernel, &initrd, &err), "guest loaded") < 0 ||
	    step(&vm, vm_memory_wait(&vm, &err), "memory registered") < 0 ||
	    step(&vm, devices_create(&vm, &err), "devices created") < 0 ||
	    step(&vm, vcpus_create(&vm, &err), "vcpus created") < 0 || vcpus_start(&vm, &err) < 0) {
		fprintf(stderr, "kite: error: %s\n", err.msg);
		code = err.code ? err.code : KITE_EXIT_ERROR;
		vm_request_stop(&vm, code, "%s", err.msg);
		if (sig_started) {
			pthread_kill(sig_thread, SIGHUP);
			pthread_join(sig_thread, NULL);
		}
		vcpus_stop(&vm);
		devices_destroy(&vm);
		vm_destroy(&vm);
		unmap_file(&kernel);
		unmap_file(&initrd);
		return code;
	}
	/* The images live in guest RAM now; do not keep their pages resident twice. */
	unmap_file(&kernel);
	unmap_file(&initrd);

	pthread_mutex_lock(&vm.stop.lock);
	while (!vm.stop.requested)
		pthread_cond_wait(&vm.stop.cond, &vm.stop.lock);
	pthread_mutex_unlock(&vm.stop.lock);

	if (sig_started) {
		pthread_kill(sig_thread, SIGHUP); /* wakes sigwait; the VM is stopping */
		pthread_join(sig_thread, NULL);
	}
	vcpus_stop(&vm);
	devices_destroy(&vm);
	code = vm.stop.exit_code;
	if (code == KITE_EXIT_OK || code > 128) /* a signal stop is what the user asked for */
		log_info("%s", vm.stop.reason);
	else
		log_error("%s", vm.stop.reason);
	vm_destroy(&vm);
	return code;
}
