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
#define DR6_BS (1ULL << 14)
#define DR7_FIXED1 0x400ULL

/* ---- vCPU threads: debug exits ---- */

/* Decides whether a debug exit is the debugger's; under s->lock. */
static bool classify(struct gdb_stub *s, unsigned id, const struct kvm_debug_exit_arch *a,
		     struct gdb_event *ev)
{
	if (a->exception == BP_VECTOR) {
		for (unsigned i = 0; i < s->nr_sw; i++) {
			if (s->sw[i].gva == a->pc) {
				*ev = (struct gdb_event){.kind = GDB_STOP_SWBP, .addr = a->pc, .slot = -1};
				return true;
			}
		}
		return false;
	}
	if (a->exception != DB_VECTOR)
		return false;
	for (int slot = 0; slot < GDB_HW_SLOTS; slot++) {
		int r = s->slot_req[slot];
		if (!(a->dr6 & (1ULL << slot)) || r < 0)
			continue;
		const struct gdb_hw_req *q = &s->hw[r];
		if (q->type == '1')
			*ev = (struct gdb_event){.kind = GDB_STOP_HWBP, .addr = q->addr, .type = '1', .slot = slot};
		else
			*ev = (struct gdb_event){.kind = GDB_STOP_WATCH, .addr = s->dr[slot], .type = q->type,
						 .slot = slot};
		return true;
	}
	if ((a->dr6 & DR6_BS) && s->stepping[id]) {
		*ev = (struct gdb_event){.kind = GDB_STOP_STEP, .addr = a->pc, .slot = -1};
		return true;
	}
	return false;
}

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
		ours = classify(s, v->id, &a, &ev);
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

/* Is a stop recorded before the last report still what gdb would expect? A
 * single-step is stale (gdb asks again if it wants one), and so is a breakpoint
 * gdb removed since: the vCPU sits on the breakpoint's instruction (an INT3 or an
 * instruction breakpoint stops before it runs), so it simply runs it next. */
static bool still_valid(const struct gdb_stub *s, const struct gdb_event *ev)
{
	switch (ev->kind) {
	case GDB_STOP_SWBP:
		for (unsigned i = 0; i < s->nr_sw; i++)
			if (s->sw[i].gva == ev->addr)
				return true;
		return false;
	case GDB_STOP_HWBP:
	case GDB_STOP_WATCH:
		return s->slot_req[ev->slot] >= 0 && s->hw[s->slot_req[ev->slot]].type == ev->type;
	default:
		return false;
	}
}

static int set_guest_debug(struct gdb_stub *s, unsigned cpu, bool step)
{
	struct kvm_guest_debug d;
	memset(&d, 0, sizeof(d));
	bool hw = (s->dr7 & 0xff) != 0;
	if (s->attached && (s->nr_sw || hw || step)) {
		d.control = KVM_GUESTDBG_ENABLE;
		if (s->nr_sw)
			d.control |= KVM_GUESTDBG_USE_SW_BP;
		if (hw) {
			d.control |= KVM_GUESTDBG_USE_HW_BP;
			for (int i = 0; i < GDB_HW_SLOTS; i++)
				d.arch.debugreg[i] = s->dr[i];
			d.arch.debugreg[7] = s->dr7 | DR7_FIXED1;
		}
		if (step) {
			d.control |= KVM_GUESTDBG_SINGLESTEP;
			/* Without it a pending interrupt turns the step into a jump to its handler. */
			if (s->debug_caps & KVM_GUESTDBG_BLOCKIRQ)
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
		if (!still_valid(s, ev)) {
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
	if (ioctl(fd, KVM_SET_REGS, &c->regs) < 0 || ioctl(fd, KVM_SET_FPU, &c->fpu) < 0) {
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
		for (unsigned i = 0; i < s->nr_sw; i++)
			if (s->sw[i].gpa >= gpa && s->sw[i].gpa - gpa < n)
				buf[done + (s->sw[i].gpa - gpa)] = s->sw[i].orig;
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
		for (unsigned i = 0; i < s->nr_sw; i++) {
			if (s->sw[i].gpa >= gpa && s->sw[i].gpa - gpa < n) {
				s->sw[i].orig = p[s->sw[i].gpa - gpa];
				p[s->sw[i].gpa - gpa] = 0xcc;
			}
		}
		pthread_mutex_unlock(&s->lock);
		done += n;
	}
	return 0;
}

/* ---- breakpoints and watchpoints ---- */

static int insert_sw(struct gdb_stub *s, uint64_t addr)
{
	for (unsigned i = 0; i < s->nr_sw; i++)
		if (s->sw[i].gva == addr)
			return 0; /* gdb may insert twice */
	if (s->nr_sw == GDB_MAX_SW_BP)
		return -1;
	struct gdb_mmu mmu;
	uint64_t gpa;
	size_t n;
	if (cpu_mmu(s, s->g_cpu, &mmu) < 0)
		return -1;
	uint8_t *p = span(s, &mmu, addr, 1, &gpa, &n);
	if (!p)
		return -1;
	pthread_mutex_lock(&s->lock);
	s->sw[s->nr_sw++] = (struct gdb_sw_bp){.gva = addr, .gpa = gpa, .orig = *p};
	*p = 0xcc;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Restores the byte under breakpoint i (unless the guest rewrote the INT3 itself)
 * and drops it from the table; under s->lock. */
static void unplant(struct gdb_stub *s, unsigned i)
{
	uint8_t *p = gmem_ptr(&s->vm->mem, s->sw[i].gpa, 1);
	if (p && *p == 0xcc)
		*p = s->sw[i].orig;
	s->sw[i] = s->sw[--s->nr_sw];
}

static int remove_sw(struct gdb_stub *s, uint64_t addr)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nr_sw; i++) {
		if (s->sw[i].gva == addr) {
			unplant(s, i);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* DR7 bits for slot i: global enable, R/W type, length. */
static uint64_t dr7_bits(int i, unsigned rw, uint64_t len)
{
	unsigned lenbits = len == 1 ? 0 : len == 2 ? 1 : len == 8 ? 2 : 3;
	return (1ULL << (2 * i + 1)) | (uint64_t)rw << (16 + 4 * i) | (uint64_t)lenbits << (18 + 4 * i);
}

static int insert_hw(struct gdb_stub *s, char type, uint64_t addr, uint64_t len)
{
	/* x86 has no read-only data breakpoint: a read watchpoint uses read/write, and
	 * gdb tells reads from writes by whether the value changed. */
	unsigned rw = type == '1' ? 0 : type == '2' ? 1 : 3;
	if (type == '1')
		len = 1; /* an instruction breakpoint has length 1 */
	if (len == 0 || len > 32 || addr + len < addr)
		return -1;
	int r = -1;
	for (int i = 0; i < GDB_HW_SLOTS; i++)
		if (s->hw[i].used && s->hw[i].type == type && s->hw[i].addr == addr && s->hw[i].len == len)
			return 0;
	for (int i = 0; i < GDB_HW_SLOTS && r < 0; i++)
		if (!s->hw[i].used)
			r = i;
	if (r < 0)
		return -1;
	/* Cover [addr, addr + len) with naturally aligned 1/2/4/8-byte pieces, one
	 * debug register each. */
	int slot[GDB_HW_SLOTS];
	uint64_t piece_addr[GDB_HW_SLOTS], piece_len[GDB_HW_SLOTS];
	int n = 0;
	for (uint64_t a = addr; a < addr + len;) {
		uint64_t l = 8;
		while (l > 1 && ((a & (l - 1)) || a + l > addr + len))
			l /= 2;
		int free_slot = -1;
		for (int i = 0; i < GDB_HW_SLOTS && free_slot < 0; i++) {
			bool taken = s->slot_req[i] >= 0;
			for (int j = 0; j < n; j++)
				taken = taken || slot[j] == i;
			if (!taken)
				free_slot = i;
		}
		if (free_slot < 0)
			return -1; /* not enough debug registers */
		slot[n] = free_slot;
		piece_addr[n] = a;
		piece_len[n] = l;
		n++;
		a += l;
	}
	pthread_mutex_lock(&s->lock);
	s->hw[r] = (struct gdb_hw_req){.used = true, .type = type, .addr = addr, .len = len};
	for (int j = 0; j < n; j++) {
		s->slot_req[slot[j]] = r;
		s->dr[slot[j]] = piece_addr[j];
		s->dr7 |= dr7_bits(slot[j], rw, piece_len[j]);
		s->hw[r].slots |= (uint8_t)(1u << slot[j]);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Frees request r and its debug registers; under s->lock. */
static void drop_hw(struct gdb_stub *s, int r)
{
	for (int i = 0; i < GDB_HW_SLOTS; i++) {
		if (s->slot_req[i] != r)
			continue;
		s->slot_req[i] = -1;
		s->dr[i] = 0;
		s->dr7 &= ~(dr7_bits(i, 3, 4) | (3ULL << (2 * i)));
	}
	s->hw[r] = (struct gdb_hw_req){0};
}

static int remove_hw(struct gdb_stub *s, char type, uint64_t addr, uint64_t len)
{
	if (type == '1')
		len = 1;
	pthread_mutex_lock(&s->lock);
	for (int r = 0; r < GDB_HW_SLOTS; r++)
		if (s->hw[r].used && s->hw[r].type == type && s->hw[r].addr == addr && s->hw[r].len == len)
			drop_hw(s, r);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int gdb_target_insert(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind)
{
	if (type == '0')
		return insert_sw(s, addr);
	if (type >= '1' && type <= '4')
		return insert_hw(s, type, addr, kind);
	return -1;
}

int gdb_target_remove(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind)
{
	if (type == '0')
		return remove_sw(s, addr);
	if (type >= '1' && type <= '4')
		return remove_hw(s, type, addr, kind);
	return -1;
}

void gdb_target_clear(struct gdb_stub *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->nr_sw)
		unplant(s, s->nr_sw - 1);
	for (int r = 0; r < GDB_HW_SLOTS; r++)
		if (s->hw[r].used)
			drop_hw(s, r);
	s->dr7 = 0;
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++) {
		s->pending[i].kind = GDB_STOP_NONE;
		s->stepping[i] = false;
	}
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		set_guest_debug(s, i, false);
}
