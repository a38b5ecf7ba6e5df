/* vCPU threads and the exit loop. Port and MMIO exits go to the buses; the loop
 * knows no device. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/mman.h>

#include "gdb/gdb.h"
#include "vmm/exit_names.h"
#include "vmm/vm.h"

#define SIG_VCPU_KICK SIGUSR1

static void kick_handler(int sig) { (void)sig; }

int vcpus_create(struct vm *vm, struct kite_err *err)
{
	vm->vcpus = calloc(vm->cfg->cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	vm->nr_vcpus = vm->cfg->cpus;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0)
			return err_set(err, KITE_EXIT_KVM, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			return err_set(err, KITE_EXIT_KVM, "mmap vCPU %u run area: %s", i, strerror(errno));
		}
		if (cpu_setup(vm, v, err) < 0)
			return -1;
	}
	return 0;
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	/* KVM bounds count * size by the page it shares with us. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
		bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, is_write);
}

static void fatal_exit(struct vcpu *v, const char *what)
{
	struct kvm_run *run = v->run;
	fprintf(stderr, "kite: error: vCPU %u: %s (exit reason %u %s)\n", v->id, what,
		run->exit_reason, kvm_exit_name(run->exit_reason));
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		fprintf(stderr, "kite: internal error suberror %u (%s), %u data words\n",
			run->internal.suberror, kvm_internal_error_name(run->internal.suberror),
			run->internal.ndata);
	if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		fprintf(stderr, "kite: hardware entry failure reason 0x%llx\n",
			(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	cpu_dump_regs(v);
	vm_request_stop(v->vm, KITE_EXIT_GUEST, "vCPU %u: %s %s", v->id, what,
			kvm_exit_name(run->exit_reason));
}

/* Returns false when the vCPU should leave its loop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		__atomic_add_fetch(run->io.direction == KVM_EXIT_IO_OUT ? &v->exits_io_out : &v->exits_io_in,
				   1, __ATOMIC_RELAXED);
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		__atomic_add_fetch(run->mmio.is_write ? &v->exits_mmio_write : &v->exits_mmio_read, 1,
				   __ATOMIC_RELAXED);
		bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data,
			     run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
		__atomic_add_fetch(&v->exits_other, 1, __ATOMIC_RELAXED);
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: how x86 resets. Linux uses it as a reboot method. */
		vm_request_stop(v->vm, KITE_EXIT_OK, "guest reset (triple fault on vCPU %u)", v->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vm_request_stop(v->vm, KITE_EXIT_OK, "guest powered off");
			return false;
		case KVM_SYSTEM_EVENT_RESET:
			vm_request_stop(v->vm, KITE_EXIT_OK, "guest reset");
			return false;
		default:
			fatal_exit(v, "unexpected system event");
			return false;
		}
	case KVM_EXIT_DEBUG:
		/* Only with --gdb: a breakpoint, watchpoint or step, or a guest's own #BP. */
		return gdb_debug_exit(v);
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; kite always has one. */
		__atomic_add_fetch(&v->exits_other, 1, __ATOMIC_RELAXED);
		return true;
	default:
		fatal_exit(v, run->exit_reason == KVM_EXIT_INTERNAL_ERROR ? "KVM internal error"
									  : "unhandled exit");
		return false;
	}
}

/* Paused: wait outside KVM_RUN until resumed or stopped. */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->stop.lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->stop.cond);
	while ((vm->paused || v->held) && !vm->stop.requested)
		pthread_cond_wait(&vm->stop.cond, &vm->stop.lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->stop.lock);
}

static void kick(struct vcpu *v)
{
	/* immediate_exit covers a kick that lands just before KVM_RUN. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	pthread_kill(v->thread, SIG_VCPU_KICK);
}

void vcpus_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop.lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
	/* Kicks under the lock, and only before a stop: vcpus_stop sets
	 * stop.requested under it before it joins the threads. */
	if (!vm->stop.requested)
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			if (vm->vcpus[i].started)
				kick(&vm->vcpus[i]);
	while (vm->parked < vm->nr_vcpus && !vm->stop.requested)
		pthread_cond_wait(&vm->stop.cond, &vm->stop.lock);
	pthread_mutex_unlock(&vm->stop.lock);
}

void vcpus_release(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop.lock);
	vm->released = true;
	pthread_cond_broadcast(&vm->stop.cond);
	pthread_mutex_unlock(&vm->stop.lock);
}

void vcpus_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop.lock);
	__atomic_store_n(&vm->paused, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->stop.cond);
	pthread_mutex_unlock(&vm->stop.lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "kite-vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	pthread_mutex_lock(&v->vm->stop.lock);
	v->tid = (pid_t)syscall(SYS_gettid);
	pthread_cond_broadcast(&v->vm->stop.cond);
	while (!v->vm->released && !v->vm->stop.requested)
		pthread_cond_wait(&v->vm->stop.cond, &v->vm->stop.lock);
	pthread_mutex_unlock(&v->vm->stop.lock);
	/* For the start-up benchmark (bench/startup.sh reads it at --level debug). */
	if (v->id == 0)
		log_debug("vCPU 0: first KVM_RUN %llu us after exec",
			  (unsigned long long)vm_uptime_us(v->vm));
	/* Trap accounting: two vDSO clock reads per exit, the handling time of
	 * one exit ending where the next KVM_RUN's time starts. */
	bool timed = !v->vm->cfg->no_exit_stats;
	uint64_t t_run = timed ? stats_now_ns() : 0;
	while (!vm_stopping(v->vm)) {
		if (__atomic_load_n(&v->vm->paused, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&v->held, __ATOMIC_ACQUIRE)) {
			vcpu_park(v);
			t_run = timed ? stats_now_ns() : 0;
			continue;
		}
		__atomic_store_n(&v->st.run_start, t_run, __ATOMIC_RELAXED);
		int rc = ioctl(v->fd, KVM_RUN, 0);
		uint64_t t_exit = timed ? stats_now_ns() : 0;
		__atomic_store_n(&v->st.run_start, 0, __ATOMIC_RELAXED);
		stats_add(&v->st.run_ns, t_exit - t_run);
		if (rc < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				t_run = t_exit;
				continue;
			}
			int e = errno;
			log_error("vCPU %u: KVM_RUN: %s", v->id, strerror(e));
			cpu_dump_regs(v);
			vm_request_stop(v->vm, KITE_EXIT_GUEST, "vCPU %u: KVM_RUN failed: %s", v->id,
					strerror(e));
			break;
		}
		unsigned reason = v->run->exit_reason;
		bus_last_hit = NULL;
		bool go_on = handle_exit(v);
		t_run = timed ? stats_now_ns() : 0;
		stats_exit(&v->st, reason, t_run - t_exit);
		/* The device that took the exit gets its time (shared by vCPUs: atomic). */
		if (bus_last_hit && timed)
			__atomic_add_fetch(&bus_last_hit->ns, t_run - t_exit, __ATOMIC_RELAXED);
		if (!go_on)
			break;
	}
	return NULL;
}

/* The thread id of a started vCPU thread (it sets it first thing). */
static pid_t vcpu_tid(struct vcpu *v)
{
	pthread_mutex_lock(&v->vm->stop.lock);
	while (!v->tid && !v->vm->stop.requested)
		pthread_cond_wait(&v->vm->stop.cond, &v->vm->stop.lock);
	pid_t t = v->tid;
	pthread_mutex_unlock(&v->vm->stop.lock);
	return t;
}

/* --vcpu-affinity and --vcpu-sched for one vCPU thread. */
static int vcpu_place(struct vm *vm, struct vcpu *v, struct kite_err *err)
{
	const struct vm_config *c = vm->cfg;
	if (c->nr_affinity) {
		int cpu = c->affinity[v->id % c->nr_affinity];
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		int e = pthread_setaffinity_np(v->thread, sizeof(set), &set);
		if (e)
			return err_set(err, KITE_EXIT_ERROR, "vCPU %u: cannot pin to host CPU %d: %s", v->id, cpu,
				       strerror(e));
	}
	if (c->sched_set) {
		bool rt = c->sched_policy == SCHED_FIFO || c->sched_policy == SCHED_RR;
		struct sched_param sp = {.sched_priority = rt ? c->sched_prio : 0};
		int e = pthread_setschedparam(v->thread, c->sched_policy, &sp);
		if (e)
			return err_set(err, KITE_EXIT_ERROR, "vCPU %u: cannot set its scheduling policy: %s%s", v->id,
				       strerror(e), e == EPERM ? " (real-time policies need CAP_SYS_NICE)" : "");
		pid_t tid;
		/* The nice value of OTHER/BATCH is per thread (setpriority on its tid). */
		if (!rt && c->sched_prio && (tid = vcpu_tid(v)) > 0 &&
		    setpriority(PRIO_PROCESS, (id_t)tid, c->sched_prio) < 0)
			return err_set(err, KITE_EXIT_ERROR, "vCPU %u: cannot set nice %d: %s", v->id, c->sched_prio,
				       strerror(errno));
	}
	return 0;
}

int vcpus_start(struct vm *vm, struct kite_err *err)
{
	struct sigaction sa = {.sa_handler = kick_handler};
	sigemptyset(&sa.sa_mask);
	sigaction(SIG_VCPU_KICK, &sa, NULL);

	/* vCPU threads unblock the kick signal themselves; everyone else keeps it blocked. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU_KICK);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (e)
			return err_set(err, KITE_EXIT_ERROR, "start vCPU %u thread: %s", i, strerror(e));
		v->started = true;
		/* Placed from here, before the seccomp filter: the thread itself waits
		 * for release and never needs the calls. */
		if (vcpu_place(vm, v, err) < 0)
			return -1;
	}
	return 0;
}

void vcpus_stop(struct vm *vm)
{
	vm_request_stop(vm, KITE_EXIT_OK, "stopped by the VMM");
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->started)
			kick(v);
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->started)
			continue;
		pthread_join(v->thread, NULL);
		v->started = false;
	}
}
