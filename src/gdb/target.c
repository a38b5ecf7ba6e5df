/* The debugger's view of the VM: vCPU registers, guest memory through the page
 * tables, breakpoints (planted 0xCC bytes) and hardware breakpoints/watchpoints
 * (DR0..DR3, DR7), single-step, and the debug exits of the vCPU threads. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "gdb/paging.h"
#include "gdb/stub.h"
#include "vmm/vm.h"

#define BP_VECTOR 3
#define DB_VECTOR 1
#define DR7_FIXED1 0x400ULL

/* ---- vCPU threads: debug exits ---- */

/* Delivers the guest's own #BP or #DB, as the hardware would have without a
 * debugger: KVM intercepted it for us. A #BP is a software exception, so KVM
 * resumes the guest's handler after the INT3 (the instruction length it saved at
 * the exit). */
static void reinject(struct vcpu *v, unsigned vector)
{
	struct kvm_vcpu_events e;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &e) == 0) {
		e.flags = 0; /* leave NMI, SIPI, shadow and SMM state as they are */
		e.exception.injected = 1;
		e.exception.nr = (uint8_t)vector;
		e.exception.has_error_code = 0;
		e.exception.error_code = 0;
		e.exception.pending = 0;
		if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &e) == 0) {
			log_debug("gdb: vCPU %u: reinjected the guest's own %s", v->id,
				  vector == BP_VECTOR ? "#BP" : "#DB");
			return;
		}
	}
	log_warn("gdb: vCPU %u: cannot reinject exception %u into the guest: %s", v->id, vector,
		 strerror(errno));
}

static void wake(struct gdb_stub *s)
{
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof(one)) < 0) {
		/* an eventfd only fails when its counter would overflow: already woken */
	}
}

bool gdb_debug_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct gdb_stub *s = vm->gdb;
	struct kvm_debug_exit_arch a = v->run->debug.arch;
	struct gdb_event ev;
	bool ours = false;
	if (s) {
		pthread_mutex_lock(&s->lock);
		ours = gdb_bps_classify(&s->bps, s->stepping[v->id], &a, &ev);
		if (ours)
			s->pending[v->id] = ev;
		pthread_mutex_unlock(&s->lock);
	}
	if (!ours) {
		if (a.exception == BP_VECTOR || a.exception == DB_VECTOR)
			reinject(v, a.exception);
		return true;
	}
	/* All-stop: this vCPU parks as soon as it returns to its loop; the stub thread
	 * parks the others and tells gdb. */
	pthread_mutex_lock(&vm->stop.lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->stop.lock);
	wake(s);
	return true;
}

/* ---- stopping and resuming ---- */

void gdb_target_stop_all(struct gdb_stub *s)
{
	struct vm *vm = s->vm;
	vcpus_pause(vm);
	pthread_mutex_lock(&vm->stop.lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].held = false;
	pthread_mutex_unlock(&vm->stop.lock);
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		s->stepping[i] = false;
	pthread_mutex_unlock(&s->lock);
	s->running = false;
}

static void stop_reply(char *reply, size_t len, unsigned cpu, const struct gdb_event *ev)
{
	switch (ev->kind) {
	case GDB_STOP_SWBP:
		snprintf(reply, len, "T05thread:%x;swbreak:;", cpu + 1);
		break;
	case GDB_STOP_HWBP:
		snprintf(reply, len, "T05thread:%x;hwbreak:;", cpu + 1);
		break;
	case GDB_STOP_WATCH:
		snprintf(reply, len, "T05thread:%x;%s:%llx;", cpu + 1,
			 ev->type == '2' ? "watch" : ev->type == '3' ? "rwatch" : "awatch",
			 (unsigned long long)ev->addr);
		break;
	default:
		snprintf(reply, len, "T05thread:%x;", cpu + 1);
		break;
	}
}

bool gdb_target_take_event(struct gdb_stub *s, char *reply, size_t len)
{
	bool found = false;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->vm->nr_vcpus && !found; i++) {
		if (s->pending[i].kind == GDB_STOP_NONE)
			continue;
		stop_reply(reply, len, i, &s->pending[i]);
		s->pending[i].kind = GDB_STOP_NONE;
		s->g_cpu = i;
		found = true;
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

static int set_guest_debug(struct gdb_stub *s, unsigned cpu, bool step)
{
	struct kvm_guest_debug d;
	memset(&d, 0, sizeof(d));
	const struct gdb_bps *b = &s->bps;
	bool hw = (b->dr7 & 0xff) != 0;
	if (s->attached && (b->nr_sw || hw || step)) {
		d.control = KVM_GUESTDBG_ENABLE;
		if (b->nr_sw)
			d.control |= KVM_GUESTDBG_USE_SW_BP;
		if (hw) {
			d.control |= KVM_GUESTDBG_USE_HW_BP;
			for (int i = 0; i < GDB_HW_SLOTS; i++)
				d.arch.debugreg[i] = b->dr[i];
			d.arch.debugreg[7] = b->dr7 | DR7_FIXED1;
		}
		if (step) {
			d.control |= KVM_GUESTDBG_SINGLESTEP;
			/* Without it a pending interrupt turns the step into a jump to its
			 * handler. Not for a vCPU in HLT: only an interrupt can end that. */
			struct kvm_mp_state mp = {0};
			ioctl(s->vm->vcpus[cpu].fd, KVM_GET_MP_STATE, &mp);
			if ((s->debug_caps & KVM_GUESTDBG_BLOCKIRQ) && mp.mp_state != KVM_MP_STATE_HALTED)
				d.control |= KVM_GUESTDBG_BLOCKIRQ;
		}
	}
	if (ioctl(s->vm->vcpus[cpu].fd, KVM_SET_GUEST_DEBUG, &d) < 0) {
		log_warn("gdb: vCPU %u: KVM_SET_GUEST_DEBUG: %s", cpu, strerror(errno));
		return -1;
	}
	return 0;
}

bool gdb_target_resume(struct gdb_stub *s, const enum gdb_action *act, char *reply, size_t len)
{
	struct vm *vm = s->vm;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct gdb_event *ev = &s->pending[i];
		if (ev->kind == GDB_STOP_NONE || act[i] == GDB_ACT_HOLD)
			continue;
		if (!gdb_bps_still_valid(&s->bps, ev)) {
			ev->kind = GDB_STOP_NONE;
			continue;
		}
		/* Report it now, as if the vCPU had stopped again right away. */
		stop_reply(reply, len, i, ev);
		ev->kind = GDB_STOP_NONE;
		s->g_cpu = i;
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		s->stepping[i] = act[i] == GDB_ACT_STEP;
	pthread_mutex_unlock(&s->lock);
	/* A Ctrl-C stop names the vCPU being stepped, else the first one running:
	 * not whichever thread gdb last looked at (an AP still waiting for its
	 * SIPI, say). */
	s->focus = vm->nr_vcpus;
	for (unsigned i = 0; i < vm->nr_vcpus && s->focus == vm->nr_vcpus; i++)
		if (act[i] == GDB_ACT_STEP)
			s->focus = i;
	for (unsigned i = 0; i < vm->nr_vcpus && s->focus == vm->nr_vcpus; i++)
		if (act[i] == GDB_ACT_CONT)
			s->focus = i;
	if (s->focus == vm->nr_vcpus)
		s->focus = 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		set_guest_debug(s, i, act[i] == GDB_ACT_STEP);
	pthread_mutex_lock(&vm->stop.lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].held = act[i] == GDB_ACT_HOLD;
	pthread_mutex_unlock(&vm->stop.lock);
	s->running = true;
	vcpus_resume(vm);
	return true;
}

/* ---- registers ---- */

int gdb_target_get_cpu(struct gdb_stub *s, unsigned cpu, struct gdb_cpu *c)
{
	int fd = s->vm->vcpus[cpu].fd;
	if (ioctl(fd, KVM_GET_REGS, &c->regs) < 0 || ioctl(fd, KVM_GET_SREGS, &c->sregs) < 0 ||
	    ioctl(fd, KVM_GET_FPU, &c->fpu) < 0) {
		log_warn("gdb: vCPU %u: reading registers: %s", cpu, strerror(errno));
		return -1;
	}
	return 0;
}

int gdb_target_set_cpu(struct gdb_stub *s, unsigned cpu, const struct gdb_cpu *c)
{
	int fd = s->vm->vcpus[cpu].fd;
	/* The x87/SSE state only when gdb changed it: a G packet carries it all. */
	struct kvm_fpu now;
	if (ioctl(fd, KVM_GET_FPU, &now) < 0)
		return -1;
	bool fpu = memcmp(&now, &c->fpu, sizeof(now)) != 0;
	if (ioctl(fd, KVM_SET_REGS, &c->regs) < 0 || (fpu && ioctl(fd, KVM_SET_FPU, &c->fpu) < 0)) {
		log_warn("gdb: vCPU %u: writing registers: %s", cpu, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- memory ---- */

static int cpu_mmu(struct gdb_stub *s, unsigned cpu, struct gdb_mmu *mmu)
{
	struct kvm_sregs sr;
	if (ioctl(s->vm->vcpus[cpu].fd, KVM_GET_SREGS, &sr) < 0)
		return -1;
	*mmu = (struct gdb_mmu){.cr0 = sr.cr0, .cr3 = sr.cr3, .cr4 = sr.cr4, .efer = sr.efer};
	return 0;
}

/* The host bytes for [gva, gva + len) as far as one page goes. */
static uint8_t *span(struct gdb_stub *s, const struct gdb_mmu *mmu, uint64_t gva, size_t len,
		     uint64_t *gpa, size_t *n)
{
	uint64_t room;
	if (gdb_translate(&s->vm->mem, mmu, gva, gpa, &room) < 0)
		return NULL;
	*n = len < room ? len : (size_t)room;
	return gmem_ptr(&s->vm->mem, *gpa, *n);
}

size_t gdb_target_read(struct gdb_stub *s, unsigned cpu, uint64_t gva, uint8_t *buf, size_t len)
{
	struct gdb_mmu mmu;
	if (cpu_mmu(s, cpu, &mmu) < 0)
		return 0;
	size_t done = 0;
	while (done < len) {
		uint64_t gpa;
		size_t n;
		const uint8_t *p = span(s, &mmu, gva + done, len - done, &gpa, &n);
		if (!p) {
			/* The page may end RAM part way: give the bytes that are there. */
			uint64_t room;
			if (gdb_translate(&s->vm->mem, &mmu, gva + done, &gpa, &room) < 0)
				break;
			for (n = 0; n < len - done && n < room && (p = gmem_ptr(&s->vm->mem, gpa + n, 1)); n++)
				buf[done + n] = *p;
			if (n == 0)
				break;
		} else {
			memcpy(buf + done, p, n);
		}
		gdb_bps_hide(&s->bps, gpa, buf + done, n);
		done += n;
	}
	return done;
}

int gdb_target_write(struct gdb_stub *s, unsigned cpu, uint64_t gva, const uint8_t *buf, size_t len)
{
	struct gdb_mmu mmu;
	if (cpu_mmu(s, cpu, &mmu) < 0)
		return -1;
	/* All or nothing: check every page before the first byte changes. */
	for (size_t done = 0; done < len;) {
		uint64_t gpa;
		size_t n;
		if (!span(s, &mmu, gva + done, len - done, &gpa, &n))
			return -1;
		done += n;
	}
	for (size_t done = 0; done < len;) {
		uint64_t gpa;
		size_t n;
		uint8_t *p = span(s, &mmu, gva + done, len - done, &gpa, &n);
		if (!p)
			return -1;
		memcpy(p, buf + done, n);
		/* A planted breakpoint stays planted; the new byte is what it hides. */
		pthread_mutex_lock(&s->lock);
		gdb_bps_rewrite(&s->bps, &s->vm->mem, gpa, n);
		pthread_mutex_unlock(&s->lock);
		done += n;
	}
	return 0;
}

/* ---- breakpoints and watchpoints ---- */

int gdb_target_insert(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind)
{
	int r = -1;
	if (type == '0') {
		/* Planted where the selected vCPU's page tables put addr now. */
		struct gdb_mmu mmu;
		uint64_t gpa, room;
		if (cpu_mmu(s, s->g_cpu, &mmu) < 0 || gdb_translate(&s->vm->mem, &mmu, addr, &gpa, &room) < 0)
			return -1;
		pthread_mutex_lock(&s->lock);
		r = gdb_bps_plant(&s->bps, &s->vm->mem, addr, gpa);
		pthread_mutex_unlock(&s->lock);
	} else if (type >= '1' && type <= '4') {
		pthread_mutex_lock(&s->lock);
		r = gdb_bps_hw_insert(&s->bps, type, addr, kind);
		pthread_mutex_unlock(&s->lock);
	}
	return r;
}

int gdb_target_remove(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind)
{
	if (type < '0' || type > '4')
		return -1;
	pthread_mutex_lock(&s->lock);
	if (type == '0')
		gdb_bps_unplant(&s->bps, &s->vm->mem, addr);
	else
		gdb_bps_hw_remove(&s->bps, type, addr, kind);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void gdb_target_clear(struct gdb_stub *s)
{
	pthread_mutex_lock(&s->lock);
	gdb_bps_unplant_all(&s->bps, &s->vm->mem);
	gdb_bps_hw_clear(&s->bps);
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++) {
		s->pending[i].kind = GDB_STOP_NONE;
		s->stepping[i] = false;
	}
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		set_guest_debug(s, i, false);
}
