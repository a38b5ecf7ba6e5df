#include "vmm/machine.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <jansson.h>
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
#include "gdb/gdb.h"
#include "migration/migrate.h"
#include "snapshot/snapshot.h"
#include "stats/stats.h"

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

/* SIGINT, SIGTERM and SIGHUP stop kite cleanly (terminal restored, devices
 * closed) with the shell's 128+signal exit code. They are blocked in every thread
 * and taken by one thread with sigwait, so no handler runs in a vCPU or device
 * context. */
static void stop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

static void *signal_thread(void *arg)
{
	struct stop_signals *s = arg;
	sigset_t set;
	stop_signal_set(&set);
	while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
		int sig;
		if (sigwait(&set, &sig) != 0 || __atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
			continue;
		s->on_signal(s->ctx, sig);
	}
	return NULL;
}

void stop_signals_start(struct stop_signals *s, void (*on_signal)(void *ctx, int sig), void *ctx)
{
	sigset_t set;
	stop_signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	s->on_signal = on_signal;
	s->ctx = ctx;
	s->done = false;
	s->started = pthread_create(&s->thread, NULL, signal_thread, s) == 0;
}

void stop_signals_stop(struct stop_signals *s)
{
	if (!s->started)
		return;
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	pthread_kill(s->thread, SIGHUP); /* wakes sigwait, which then sees done */
	pthread_join(s->thread, NULL);
	s->started = false;
}

static int step(struct vm *vm, int result, const char *what)
{
	if (result < 0)
		return -1;
	log_debug("%s at %llu us", what, (unsigned long long)vm_uptime_us(vm));
	return 0;
}

void machine_abort(struct vm *vm, struct kite_err *err)
{
	if (!err->code)
		err_set(err, KITE_EXIT_ERROR, "cannot start the VM");
	vm_request_stop(vm, err->code, "%s", err->msg);
	vcpus_stop(vm);
	gdb_stub_stop(vm);
	migration_stop(vm);
	stats_stop(vm);
	devices_destroy(vm);
	vm_destroy(vm);
}

int machine_prepare(struct vm *vm, const struct vm_config *cfg, struct kite_err *err)
{
	struct mapped_file kernel = {0}, initrd = {0};
	vm->cfg = cfg;
	/* Each step logs its time since exec at --level debug: the start-up profile. */
	int r = 0;
	/* A snapshot load or a migration brings memory and state instead of a kernel. */
	bool fresh = !cfg->restoring;
	vm->paused = cfg->start_paused;
	if ((fresh && step(vm, open_images(cfg, &kernel, &initrd, err), "images opened") < 0) ||
	    step(vm, kvm_open(vm, err), "kvm opened") < 0 ||
	    step(vm, vm_create(vm, cfg, err), "vm created") < 0 ||
	    (fresh && step(vm, load_guest(vm, &kernel, &initrd, err), "guest loaded") < 0) ||
	    step(vm, devices_create(vm, err), "devices created") < 0 ||
	    step(vm, vcpus_create(vm, err), "vcpus created") < 0 ||
	    step(vm, seccomp_prepare(&cfg->seccomp, err), "seccomp filter compiled") < 0) {
		machine_abort(vm, err);
		r = -1;
	}
	/* The images live in guest RAM now; do not keep their pages resident twice. */
	unmap_file(&kernel);
	unmap_file(&initrd);
	return r;
}

int machine_finish(struct vm *vm, struct kite_err *err)
{
	const struct vm_config *cfg = vm->cfg;
	if ((cfg->restore && step(vm, snapshot_restore(vm, err), "snapshot restored") < 0) || stats_start(vm) < 0 ||
	    (cfg->gdb && gdb_stub_start(vm, cfg->gdb, err) < 0) || migration_prepare(vm, err) < 0 ||
	    vcpus_start(vm, err) < 0 || step(vm, seccomp_lockdown(&cfg->seccomp, err), "seccomp on") < 0) {
		machine_abort(vm, err);
		return -1;
	}
	/* vCPU threads wait for this: the guest runs only once the filter is in force. */
	vcpus_release(vm);
	return 0;
}

int machine_start(struct vm *vm, const struct vm_config *cfg, struct kite_err *err)
{
	if (machine_prepare(vm, cfg, err) < 0)
		return -1;
	return machine_finish(vm, err);
}

/* --stats-file: the final trap accounting, as GET /stats would show it. */
static void write_stats(struct vm *vm, const char *path)
{
	json_t *j = stats_json(vm);
	if (json_dump_file(j, path, JSON_INDENT(1)) < 0)
		log_warn("cannot write the statistics to '%s'", path);
	json_decref(j);
}

int machine_wait(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop.lock);
	while (!vm->stop.requested)
		pthread_cond_wait(&vm->stop.cond, &vm->stop.lock);
	pthread_mutex_unlock(&vm->stop.lock);

	vcpus_stop(vm);
	gdb_stub_stop(vm);
	migration_stop(vm);
	if (vm->cfg->stats_path)
		write_stats(vm, vm->cfg->stats_path);
	stats_stop(vm);
	devices_destroy(vm);
	int code = vm->stop.exit_code;
	if (code == KITE_EXIT_OK || code > 128) /* a signal stop is what the user asked for */
		log_info("%s", vm->stop.reason);
	else
		log_error("%s", vm->stop.reason);
	vm_destroy(vm);
	return code;
}

static void stop_vm_on_signal(void *ctx, int sig)
{
	vm_request_stop(ctx, 128 + sig, "stopped by signal %s", strsignal(sig));
}

int machine_run(const struct vm_config *cfg)
{
	static struct vm vm;
	struct kite_err err = {0};
	struct stop_signals sigs;
	vm_init(&vm);
	stop_signals_start(&sigs, stop_vm_on_signal, &vm);
	int code;
	if (machine_start(&vm, cfg, &err) < 0) {
		fprintf(stderr, "kite: error: %s\n", err.msg);
		code = err.code;
	} else {
		code = machine_wait(&vm);
	}
	stop_signals_stop(&sigs);
	return code;
}
