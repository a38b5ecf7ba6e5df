#include "stats/stats.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stats/analytics.h"
#include "stats/kvmstats.h"
#include "util/log.h"
#include "virtio/virtio.h"
#include "vmm/exit_names.h"
#include "vmm/seccomp.h"
#include "vmm/vm.h"

/* Exit classes of the analytics window (docs/stats.md). */
enum {
	C_HALT,       /* KVM: HLT exits */
	C_IRQ,        /* KVM: external-interrupt exits */
	C_IRQ_WINDOW, /* KVM: interrupt-window exits */
	C_PIO,        /* kite: port I/O exits */
	C_MMIO,       /* kite: MMIO exits */
	C_DOORBELL,   /* virtio notifications KVM turned into ioeventfd signals */
	C_KERNEL,     /* every other exit KVM handled itself (CPUID, MSRs, APIC, EPT/NPT...) */
	C_USER_OTHER, /* every other exit that reached kite */
	C_COUNT
};

static const char *const class_names[C_COUNT] = {"halt", "irq", "irq_window", "pio",
						 "mmio", "doorbell", "kernel_other", "user_other"};

/* KVM per-vCPU statistics the analytics use. */
enum { K_EXITS, K_HALT, K_IRQ, K_IRQ_WINDOW, K_IO, K_MMIO, K_HALT_WAIT, K_POLL_OK, K_POLL_FAIL, K_BLOCKING,
       K_COUNT };
static const char *const kvm_names[K_COUNT] = {"exits", "halt_exits", "irq_exits", "irq_window_exits",
					       "io_exits", "mmio_exits", "halt_wait_ns",
					       "halt_poll_success_ns", "halt_poll_fail_ns", "blocking"};

/* Entropy classes beyond C_COUNT: each device range's exits on its own (the
 * pio and mmio classes split by device), unclaimed accesses per bus. */
#define DEV_CLASSES 48

/* Cumulative values at one sampling instant. */
struct point {
	uint64_t t_ns;
	uint64_t cls[C_COUNT];
	uint64_t dev[DEV_CLASSES];
	uint64_t run_ns, handle_ns, halted_ns;
};

struct vm_stats {
	struct vm *vm;
	pthread_t thread;
	pthread_mutex_t lock; /* the window and the KVM stats reads */
	pthread_cond_t cond;
	bool stop, started;
	struct kvmstats vm_kvm;
	struct kvmstats *vcpu_kvm; /* nr_vcpus */
	int idx[K_COUNT];          /* kvm_names -> index in a vCPU's stats */
	/* Per vCPU: since when it has been seen halted in one and the same halt
	 * (KVM's "blocking" set, its halt count unchanged); 0 when not. */
	uint64_t *block_since, *block_halts;
	struct point ring[STATS_WINDOW + 1];
	unsigned head, len;        /* points in the ring */
};

static uint64_t sum_vcpu(struct vm *vm, size_t field_off)
{
	uint64_t t = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		t += __atomic_load_n((uint64_t *)((char *)&vm->vcpus[i].st + field_off), __ATOMIC_RELAXED);
	return t;
}

static uint64_t reason_sum(struct vm *vm, unsigned reason)
{
	return sum_vcpu(vm, offsetof(struct vcpu_stats, exits) + reason * sizeof(uint64_t));
}

static uint64_t virtio_kicks(struct vm *vm)
{
	uint64_t k = 0;
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		k += __atomic_load_n(&vm->virtio[i]->kicks, __ATOMIC_RELAXED);
	return k;
}

static uint64_t kvm_sum(struct vm_stats *s, int k)
{
	uint64_t t = 0;
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		t += kvmstats_value(&s->vcpu_kvm[i], s->idx[k]);
	return t;
}

/* Tracks the halt in progress of vCPU i from fresh KVM values (lock held). */
static void track_block(struct vm_stats *s, unsigned i, uint64_t now)
{
	struct kvmstats *k = &s->vcpu_kvm[i];
	uint64_t halts = kvmstats_value(k, s->idx[K_HALT]);
	if (!kvmstats_value(k, s->idx[K_BLOCKING])) {
		s->block_since[i] = 0;
	} else if (!s->block_since[i] || halts != s->block_halts[i]) {
		s->block_since[i] = now; /* a halt seen for the first time: it began before */
		s->block_halts[i] = halts;
	}
}

/* One vCPU's time so far: in KVM_RUN (counting a KVM_RUN still in progress),
 * in kite, and halted. KVM adds a halt's time only when it ends, so a halt in
 * progress counts from when the sampler first saw it (an underestimate of at
 * most one sampling period), never from the start of a KVM_RUN that may have
 * run and halted many times since. */
static void vcpu_times(struct vm_stats *s, unsigned i, uint64_t now, uint64_t *run, uint64_t *handle,
		       uint64_t *halted)
{
	struct vcpu *v = &s->vm->vcpus[i];
	*run = __atomic_load_n(&v->st.run_ns, __ATOMIC_RELAXED);
	*handle = __atomic_load_n(&v->st.handle_ns, __ATOMIC_RELAXED);
	*halted = 0;
	struct kvmstats *k = &s->vcpu_kvm[i];
	for (int j = K_HALT_WAIT; j <= K_POLL_FAIL; j++)
		*halted += kvmstats_value(k, s->idx[j]);
	uint64_t start = __atomic_load_n(&v->st.run_start, __ATOMIC_RELAXED);
	if (start && now > start) {
		*run += now - start;
		uint64_t since = s->block_since[i];
		if (since && now > since)
			*halted += now - (since > start ? since : start);
	}
	if (*halted > *run)
		*halted = *run;
}

/* Reads everything once; lock held. */
static void take_point(struct vm_stats *s, struct point *p)
{
	struct vm *vm = s->vm;
	p->t_ns = stats_now_ns();
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		kvmstats_read(&s->vcpu_kvm[i]);
		track_block(s, i, p->t_ns);
	}
	uint64_t pio = reason_sum(vm, KVM_EXIT_IO), mmio = reason_sum(vm, KVM_EXIT_MMIO);
	uint64_t user = 0;
	for (unsigned r = 0; r < STATS_REASONS; r++)
		user += reason_sum(vm, r);
	uint64_t kicks = virtio_kicks(vm);
	p->cls[C_HALT] = kvm_sum(s, K_HALT);
	p->cls[C_IRQ] = kvm_sum(s, K_IRQ);
	p->cls[C_IRQ_WINDOW] = kvm_sum(s, K_IRQ_WINDOW);
	p->cls[C_PIO] = pio;
	p->cls[C_MMIO] = mmio;
	p->cls[C_DOORBELL] = kicks;
	uint64_t known = p->cls[C_HALT] + p->cls[C_IRQ] + p->cls[C_IRQ_WINDOW] + kvm_sum(s, K_IO) +
			 kvm_sum(s, K_MMIO) + kicks;
	uint64_t all = kvm_sum(s, K_EXITS);
	p->cls[C_KERNEL] = all > known ? all - known : 0;
	p->cls[C_USER_OTHER] = user - pio - mmio;
	unsigned n = 0;
	const struct bus *buses[2] = {&vm->pio, &vm->mmio};
	memset(p->dev, 0, sizeof(p->dev));
	for (int b = 0; b < 2; b++) {
		for (int r = 0; r < buses[b]->nr; r++) {
			unsigned at = n < DEV_CLASSES - 2 ? n++ : DEV_CLASSES - 3; /* overflow shares one */
			p->dev[at] += __atomic_load_n(&buses[b]->ranges[r].accesses, __ATOMIC_RELAXED);
		}
		p->dev[DEV_CLASSES - 2 + b] = __atomic_load_n(&buses[b]->unclaimed, __ATOMIC_RELAXED);
	}
	p->run_ns = p->handle_ns = p->halted_ns = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		uint64_t run, handle, halted;
		vcpu_times(s, i, p->t_ns, &run, &handle, &halted);
		p->run_ns += run;
		p->handle_ns += handle;
		p->halted_ns += halted;
	}
}

static void *sampler(void *arg)
{
	struct vm_stats *s = arg;
	pthread_setname_np(pthread_self(), "kite-stats");
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct point *p = &s->ring[s->head];
		take_point(s, p);
		s->head = (s->head + 1) % (STATS_WINDOW + 1);
		if (s->len < STATS_WINDOW + 1)
			s->len++;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += STATS_PERIOD_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int stats_start(struct vm *vm)
{
	struct vm_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->vm = vm;
	unsigned n = vm->nr_vcpus ? vm->nr_vcpus : 1;
	s->vcpu_kvm = calloc(n, sizeof(*s->vcpu_kvm));
	s->block_since = calloc(n, sizeof(uint64_t));
	s->block_halts = calloc(n, sizeof(uint64_t));
	if (!s->vcpu_kvm || !s->block_since || !s->block_halts) {
		free(s->vcpu_kvm);
		free(s->block_since);
		free(s->block_halts);
		free(s);
		return -1;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (kvmstats_open(&s->vm_kvm, vm->vm_fd) < 0)
		log_debug("stats: no KVM statistics for the VM: %s", strerror(errno));
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (kvmstats_open(&s->vcpu_kvm[i], vm->vcpus[i].fd) < 0)
			log_debug("stats: no KVM statistics for vCPU %u: %s", i, strerror(errno));
	for (int k = 0; k < K_COUNT; k++)
		s->idx[k] = vm->nr_vcpus ? kvmstats_find(&s->vcpu_kvm[0], kvm_names[k]) : -1;
	vm->stats = s;
	if (pthread_create(&s->thread, NULL, sampler, s) == 0)
		s->started = true;
	return 0;
}

void stats_stop(struct vm *vm)
{
	struct vm_stats *s = vm->stats;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->started)
		pthread_join(s->thread, NULL);
	kvmstats_close(&s->vm_kvm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		kvmstats_close(&s->vcpu_kvm[i]);
	free(s->vcpu_kvm);
	free(s->block_since);
	free(s->block_halts);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
	vm->stats = NULL;
}

/* ---- JSON ---- */

static json_t *kvm_object(struct kvmstats *k)
{
	json_t *o = json_object();
	for (uint32_t i = 0; i < k->nr; i++)
		json_object_set_new(o, k->desc[i].name, json_integer((json_int_t)kvmstats_value(k, (int)i)));
	return o;
}

static double frac(uint64_t part, uint64_t whole) { return whole ? (double)part / (double)whole : 0.0; }

static json_t *vcpu_json(struct vm *vm, struct vm_stats *s, unsigned i)
{
	struct vcpu *v = &vm->vcpus[i];
	json_t *o = json_object(), *ex = json_object(), *exns = json_object(), *hist = json_array();
	json_object_set_new(o, "id", json_integer(i));
	for (unsigned r = 0; r < STATS_REASONS; r++) {
		uint64_t n = __atomic_load_n(&v->st.exits[r], __ATOMIC_RELAXED);
		if (!n)
			continue;
		const char *name = kvm_exit_short_name(r);
		json_object_set_new(ex, name, json_integer((json_int_t)n));
		json_object_set_new(exns, name,
				    json_integer((json_int_t)__atomic_load_n(&v->st.exit_ns[r], __ATOMIC_RELAXED)));
	}
	json_object_set_new(o, "userspace_exits", ex);
	json_object_set_new(o, "exit_handling_ns", exns);
	uint64_t lim = STATS_HIST_BASE_NS;
	for (unsigned b = 0; b < STATS_HIST; b++, lim <<= 1) {
		json_t *e = json_object();
		json_object_set_new(e, "le_ns", b + 1 < STATS_HIST ? json_integer((json_int_t)lim) : json_null());
		json_object_set_new(e, "count", json_integer((json_int_t)__atomic_load_n(&v->st.hist[b], __ATOMIC_RELAXED)));
		json_array_append_new(hist, e);
	}
	json_object_set_new(o, "exit_latency_hist", hist);

	uint64_t run = __atomic_load_n(&v->st.run_ns, __ATOMIC_RELAXED);
	uint64_t handle = __atomic_load_n(&v->st.handle_ns, __ATOMIC_RELAXED);
	uint64_t halted = 0;
	if (s) {
		vcpu_times(s, i, stats_now_ns(), &run, &handle, &halted);
		if (s->vcpu_kvm[i].fd >= 0)
			json_object_set_new(o, "kvm", kvm_object(&s->vcpu_kvm[i]));
	}
	uint64_t guest = run - halted, total = run + handle;
	json_t *t = json_object();
	json_object_set_new(t, "in_kvm_run_ns", json_integer((json_int_t)run));
	json_object_set_new(t, "guest_ns", json_integer((json_int_t)guest));
	json_object_set_new(t, "halted_ns", json_integer((json_int_t)halted));
	json_object_set_new(t, "exit_handling_ns", json_integer((json_int_t)handle));
	json_object_set_new(t, "guest_frac", json_real(frac(guest, total)));
	json_object_set_new(t, "halted_frac", json_real(frac(halted, total)));
	json_object_set_new(t, "exit_handling_frac", json_real(frac(handle, total)));
	json_object_set_new(o, "time", t);
	return o;
}

static json_t *devices_json(struct vm *vm)
{
	json_t *a = json_array();
	const struct bus *buses[2] = {&vm->pio, &vm->mmio};
	for (int b = 0; b < 2; b++) {
		for (int i = 0; i < buses[b]->nr; i++) {
			const struct bus_range *r = &buses[b]->ranges[i];
			json_t *o = json_object();
			json_object_set_new(o, "bus", json_string(buses[b]->name));
			json_object_set_new(o, "name", json_string(r->name));
			json_object_set_new(o, "base", json_integer((json_int_t)r->base));
			json_object_set_new(o, "len", json_integer((json_int_t)r->len));
			json_object_set_new(o, "exits", json_integer((json_int_t)__atomic_load_n(&r->accesses, __ATOMIC_RELAXED)));
			json_object_set_new(o, "ns", json_integer((json_int_t)__atomic_load_n(&r->ns, __ATOMIC_RELAXED)));
			json_array_append_new(a, o);
		}
		json_t *o = json_object();
		json_object_set_new(o, "bus", json_string(buses[b]->name));
		json_object_set_new(o, "name", json_string("unclaimed"));
		json_object_set_new(o, "exits", json_integer((json_int_t)__atomic_load_n(&buses[b]->unclaimed, __ATOMIC_RELAXED)));
		json_array_append_new(a, o);
	}
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		json_t *o = json_object();
		json_object_set_new(o, "bus", json_string("virtio"));
		json_object_set_new(o, "name", json_string(d->name));
		json_object_set_new(o, "kicks", json_integer((json_int_t)__atomic_load_n(&d->kicks, __ATOMIC_RELAXED)));
		json_object_set_new(o, "interrupts", json_integer((json_int_t)__atomic_load_n(&d->interrupts, __ATOMIC_RELAXED)));
		json_object_set_new(o, "requests", json_integer((json_int_t)__atomic_load_n(&d->requests, __ATOMIC_RELAXED)));
		json_object_set_new(o, "errors", json_integer((json_int_t)__atomic_load_n(&d->errors, __ATOMIC_RELAXED)));
		json_array_append_new(a, o);
	}
	return a;
}

/* The analytics over the sliding window (lock held). */
static json_t *analytics_json(struct vm_stats *s)
{
	json_t *o = json_object();
	if (s->len < 2) {
		json_object_set_new(o, "window_s", json_real(0));
		return o;
	}
	const unsigned R = STATS_WINDOW + 1;
	unsigned newest = (s->head + R - 1) % R, oldest = (s->head + R - s->len) % R;
	const struct point *a = &s->ring[oldest], *b = &s->ring[newest];
	double secs = (double)(b->t_ns - a->t_ns) / 1e9;
	uint64_t d[C_COUNT];
	json_t *cls = json_object();
	for (int c = 0; c < C_COUNT; c++) {
		d[c] = b->cls[c] >= a->cls[c] ? b->cls[c] - a->cls[c] : 0;
		json_object_set_new(cls, class_names[c], json_real(secs > 0 ? (double)d[c] / secs : 0));
	}
	json_object_set_new(o, "window_s", json_real(secs));
	json_object_set_new(o, "exits_per_s", cls);
	/* Entropy over the fine classes: the KVM-side ones and each device. */
	uint64_t fine[C_COUNT + DEV_CLASSES];
	size_t nf = 0;
	for (int c = 0; c < C_COUNT; c++)
		if (c != C_PIO && c != C_MMIO && c != C_USER_OTHER)
			fine[nf++] = d[c];
	fine[nf++] = d[C_USER_OTHER];
	for (int i = 0; i < DEV_CLASSES; i++)
		fine[nf++] = b->dev[i] >= a->dev[i] ? b->dev[i] - a->dev[i] : 0;
	json_object_set_new(o, "entropy_bits", json_real(entropy_bits(fine, nf)));

	uint64_t run = b->run_ns - a->run_ns, handle = b->handle_ns - a->handle_ns;
	uint64_t halted = b->halted_ns - a->halted_ns;
	if (halted > run)
		halted = run;
	uint64_t guest = run - halted;
	double wall = secs * 1e9 * (double)s->vm->nr_vcpus;
	struct exit_rates r = {
		.pio = secs > 0 ? (double)d[C_PIO] / secs : 0,
		.mmio = secs > 0 ? (double)(d[C_MMIO] + d[C_DOORBELL]) / secs : 0,
		.hlt = secs > 0 ? (double)d[C_HALT] / secs : 0,
		.other = secs > 0 ? (double)(d[C_IRQ] + d[C_IRQ_WINDOW] + d[C_KERNEL] + d[C_USER_OTHER]) / secs : 0,
		.halted_frac = wall > 0 ? (double)halted / wall : 0,
	};
	double post[PHASE_COUNT];
	enum phase ph = phase_classify(&r, post);
	json_object_set_new(o, "phase", json_string(phase_name(ph)));
	json_t *po = json_object();
	for (int p = 0; p < PHASE_COUNT; p++)
		json_object_set_new(po, phase_name((enum phase)p), json_real(post[p]));
	json_object_set_new(o, "posteriors", po);
	json_object_set_new(o, "halted_frac", json_real(r.halted_frac));
	json_object_set_new(o, "illusion_cost", json_real(illusion_cost(guest, handle, halted)));
	json_object_set_new(o, "illusion_cost_running", json_real(illusion_cost(guest, handle, 0)));
	/* Useful guest time: CPU-seconds per second the guest ran its own code. */
	json_object_set_new(o, "useful_guest_per_s", json_real(secs > 0 ? (double)guest / 1e9 / secs : 0));
	return o;
}

/* A "Key: N kB" (or bare number) line of a /proc file, or -1. */
static long long proc_field(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[256];
	long long v = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			v = strtoll(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Guest RAM's backing and what the host did with it: resident memory, huge
 * pages, pages KSM merged. */
static json_t *memory_json(struct vm *vm)
{
	json_t *o = json_object();
	const struct vm_config *c = vm->cfg;
	json_object_set_new(o, "backing", json_string(c->huge_pages == GMEM_HUGETLB ? "hugetlb-2M"
						      : c->huge_pages == GMEM_THP  ? "thp"
										   : "anonymous"));
	json_object_set_new(o, "ksm", json_boolean(c->ksm));
	json_object_set_new(o, "guest_mib", json_integer((json_int_t)c->mem_mib));
	json_object_set_new(o, "vmm_rss_kib", json_integer(proc_field("/proc/self/status", "VmRSS")));
	json_object_set_new(o, "anon_huge_kib", json_integer(proc_field("/proc/self/smaps_rollup", "AnonHugePages")));
	json_object_set_new(o, "hugetlb_kib", json_integer(proc_field("/proc/self/smaps_rollup", "Private_Hugetlb")));
	long long merging = -1;
	FILE *f = fopen("/proc/self/ksm_merging_pages", "re");
	if (f) {
		if (fscanf(f, "%lld", &merging) != 1)
			merging = -1;
		fclose(f);
	}
	json_object_set_new(o, "ksm_merging_pages", merging >= 0 ? json_integer(merging) : json_null());
	return o;
}

void *stats_json(struct vm *vm)
{
	struct vm_stats *s = vm->stats;
	json_t *o = json_object();
	if (s)
		pthread_mutex_lock(&s->lock);
	/* Fresh KVM values for the totals (the sampler's may be 100 ms old). */
	if (s)
		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			kvmstats_read(&s->vcpu_kvm[i]);
			track_block(s, i, stats_now_ns());
		}
	json_object_set_new(o, "uptime_us", json_integer((json_int_t)vm_uptime_us(vm)));
	json_object_set_new(o, "seccomp", json_boolean(seccomp_active()));
	uint64_t user = 0;
	for (unsigned r = 0; r < STATS_REASONS; r++)
		user += reason_sum(vm, r);
	json_t *tot = json_object();
	json_object_set_new(tot, "userspace_exits", json_integer((json_int_t)user));
	if (s && s->idx[K_EXITS] >= 0) {
		uint64_t all = kvm_sum(s, K_EXITS);
		json_object_set_new(tot, "exits", json_integer((json_int_t)all));
		json_object_set_new(tot, "in_kernel_exits", json_integer((json_int_t)(all > user ? all - user : 0)));
	}
	json_object_set_new(o, "totals", tot);
	json_t *vc = json_array();
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		json_array_append_new(vc, vcpu_json(vm, s, i));
	json_object_set_new(o, "vcpus", vc);
	json_object_set_new(o, "devices", devices_json(vm));
	json_object_set_new(o, "memory", memory_json(vm));
	if (s) {
		if (s->vm_kvm.fd >= 0 && kvmstats_read(&s->vm_kvm) == 0)
			json_object_set_new(o, "kvm_vm", kvm_object(&s->vm_kvm));
		json_object_set_new(o, "analytics", analytics_json(s));
		pthread_mutex_unlock(&s->lock);
	}
	return o;
}
