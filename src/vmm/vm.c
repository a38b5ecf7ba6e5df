#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"

void vm_init(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	pthread_mutex_init(&vm->stop.lock, NULL);
	pthread_cond_init(&vm->stop.cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
}

int kvm_open(struct vm *vm, struct kite_err *err)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		if (errno == ENOENT)
			return err_set(err, KITE_EXIT_KVM,
				       "/dev/kvm not found: KVM is not available on this host (load kvm_intel or kvm_amd)");
		return err_set(err, KITE_EXIT_KVM, "open /dev/kvm: %s%s", strerror(errno),
			       errno == EACCES ? " (add the user to the kvm group)" : "");
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION)
		return err_set(err, KITE_EXIT_KVM, "/dev/kvm speaks API %d, kite needs %d", api,
			       KVM_API_VERSION);
	static const struct {
		int cap;
		const char *name;
	} need[] = {
		{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
		{KVM_CAP_HLT, "KVM_CAP_HLT"},
		{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
		{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
		{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
		{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
		{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
	};
	for (unsigned i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0)
			return err_set(err, KITE_EXIT_KVM, "/dev/kvm lacks %s", need[i].name);
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max <= 0)
		max = 4;
	vm->max_vcpus = (unsigned)max > 254 ? 254 : (unsigned)max; /* xAPIC ids, MADT */
	vm->tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	return 0;
}

static int get_supported_cpuid(struct vm *vm, struct kite_err *err)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->supported_cpuid = c;
			return 0;
		}
		int e = errno;
		free(c);
		if (e != E2BIG)
			return err_set(err, KITE_EXIT_KVM, "KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
	}
	return err_set(err, KITE_EXIT_KVM, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

int vm_set_memslots(struct vm *vm, uint32_t flags)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gmem_region *r = &vm->mem.region[i];
		struct kvm_userspace_memory_region slot = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
			.flags = flags,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return -1;
	}
	return 0;
}

static int register_memslots(struct vm *vm, struct kite_err *err)
{
	if (vm_set_memslots(vm, vm->cfg->track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_SET_USER_MEMORY_REGION (%llu MiB of guest memory): %s",
			       (unsigned long long)(vm->mem.ram_size >> 20), strerror(errno));
	return 0;
}

/* "HugePages_Free: N of M" from /proc/meminfo, for the error line. */
static const char *hugepages_free(void)
{
	static char out[64];
	unsigned long total = 0, fr = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	while (f && fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Total: %lu", &total);
		sscanf(line, "HugePages_Free: %lu", &fr);
	}
	if (f)
		fclose(f);
	snprintf(out, sizeof(out), "HugePages_Free: %lu of %lu", fr, total);
	return out;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, struct kite_err *err)
{
	vm->cfg = cfg;
	if (cfg->cpus == 0 || cfg->cpus > vm->max_vcpus)
		return err_set(err, KITE_EXIT_USAGE, "--cpus %u out of range: this host's KVM allows 1 to %u",
			       cfg->cpus, vm->max_vcpus);
	if (get_supported_cpuid(vm, err) < 0)
		return -1;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_CREATE_VM: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	uint64_t idmap = LAYOUT_IDENTITY_MAP;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	uint64_t bytes = cfg->mem_mib << 20;
	if (cfg->restore_mem_base) {
		if (gmem_init(&vm->mem, bytes, cfg->restore_mem_base) < 0)
			return err_set(err, KITE_EXIT_ERROR, "guest memory: %s", strerror(errno));
		vm->mem.mapped = 1; /* an mmap of bytes: unmapped with the VM */
	} else if (cfg->restoring) {
		if (gmem_init_file(&vm->mem, bytes, cfg->restore_mem_fd) < 0)
			return err_set(err, KITE_EXIT_IMAGE, "cannot map the snapshot's memory file: %s",
				       strerror(errno));
	} else if (gmem_init_backed(&vm->mem, bytes, cfg->huge_pages, cfg->ksm) < 0) {
		int e = errno;
		if (cfg->huge_pages == GMEM_HUGETLB)
			return err_set(err, KITE_EXIT_ERROR,
				       "huge pages 2M: cannot map %llu MiB of 2 MiB huge pages: %s (%s; reserve "
				       "them with sysctl vm.nr_hugepages)",
				       (unsigned long long)cfg->mem_mib, strerror(e), hugepages_free());
		return err_set(err, KITE_EXIT_ERROR, "cannot map %llu MiB of guest memory: %s",
			       (unsigned long long)cfg->mem_mib, strerror(e));
	}
	/* RAM before the irqchip: on some backends the first memslot after
	 * KVM_CREATE_IRQCHIP waits ~7 ms for an RCU grace period, before it none
	 * (bench/README.md, vmcost). The wait moves to teardown, after the guest. */
	/* Kite's own anonymous RAM, or a migration's (zeroed, then filled): a page
	 * never populated is a zero page. Not so for a memory file or a userfaultfd. */
	vm->mem.absent_is_zero = cfg->restore_mem_base ? !cfg->restore_mem_uffd : !cfg->restoring;
	if (register_memslots(vm, err) < 0)
		return -1;
	if (cfg->track_dirty && gmem_track_dirty(&vm->mem) < 0)
		return err_set(err, KITE_EXIT_ERROR, "out of memory for the dirty page bitmap");

	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_set(err, KITE_EXIT_KVM, "KVM_CREATE_PIT2: %s", strerror(errno));
	return 0;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->run && v->run != MAP_FAILED)
			munmap(v->run, (size_t)vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
	free(vm->routing);
	vm->routing = NULL;
	gmem_free(&vm->mem);
	bus_free(&vm->pio);
	bus_free(&vm->mmio);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

void vm_request_stop(struct vm *vm, int exit_code, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->stop.lock);
	if (!vm->stop.requested) {
		__atomic_store_n(&vm->stop.requested, true, __ATOMIC_RELEASE);
		vm->stop.exit_code = exit_code;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->stop.reason, sizeof(vm->stop.reason), fmt, ap);
		va_end(ap);
		pthread_cond_broadcast(&vm->stop.cond);
	}
	pthread_mutex_unlock(&vm->stop.lock);
}

bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->stop.requested, __ATOMIC_ACQUIRE);
}

void vm_irq_set(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_debug("KVM_IRQ_LINE gsi %u: %s", gsi, strerror(errno));
}

/* KVM_SET_GSI_ROUTING replaces the whole table, KVM_CREATE_IRQCHIP's default
 * included, so the table starts as that default: GSI 0-15 to the PICs and the
 * IOAPIC, 16-23 to the IOAPIC only. MSI routes follow, one per GSI from 24. */
#define GSI_IOAPIC_PINS 24
#define GSI_MAX 1024

static int routing_init(struct vm *vm)
{
	size_t sz = sizeof(struct kvm_irq_routing) + GSI_MAX * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *r = calloc(1, sz);
	if (!r)
		return -1;
	for (unsigned gsi = 0; gsi < GSI_IOAPIC_PINS; gsi++) {
		if (gsi < 16) {
			struct kvm_irq_routing_entry *e = &r->entries[r->nr++];
			e->gsi = gsi;
			e->type = KVM_IRQ_ROUTING_IRQCHIP;
			e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			e->u.irqchip.pin = gsi % 8;
		}
		struct kvm_irq_routing_entry *e = &r->entries[r->nr++];
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi;
	}
	vm->routing = r;
	vm->next_gsi = GSI_IOAPIC_PINS;
	return 0;
}

int vm_gsi_alloc(struct vm *vm)
{
	pthread_mutex_lock(&vm->gsi_lock);
	int gsi = -1;
	if (!vm->routing && routing_init(vm) < 0)
		goto out;
	if (vm->next_gsi >= GSI_MAX || vm->routing->nr >= GSI_MAX)
		goto out;
	gsi = (int)vm->next_gsi++;
	/* An MSI route that goes nowhere until the guest programs it. */
	struct kvm_irq_routing_entry *e = &vm->routing->entries[vm->routing->nr++];
	memset(e, 0, sizeof(*e));
	e->gsi = (uint32_t)gsi;
	e->type = KVM_IRQ_ROUTING_MSI;
out:
	pthread_mutex_unlock(&vm->gsi_lock);
	return gsi;
}

int vm_gsi_set_msi(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	int r = -1;
	pthread_mutex_lock(&vm->gsi_lock);
	for (uint32_t i = 0; vm->routing && i < vm->routing->nr; i++) {
		struct kvm_irq_routing_entry *e = &vm->routing->entries[i];
		if (e->gsi != gsi || e->type != KVM_IRQ_ROUTING_MSI)
			continue;
		if (e->u.msi.address_lo == (uint32_t)addr && e->u.msi.address_hi == (uint32_t)(addr >> 32) &&
		    e->u.msi.data == data) {
			r = 0; /* unchanged: no table reload */
			break;
		}
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		r = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routing);
		if (r < 0)
			log_warn("KVM_SET_GSI_ROUTING: %s", strerror(errno));
		break;
	}
	pthread_mutex_unlock(&vm->gsi_lock);
	return r < 0 ? -1 : 0;
}

uint64_t vm_uptime_us(const struct vm *vm)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	const struct timespec *t0 = &vm->cfg->exec_time;
	return (uint64_t)(now.tv_sec - t0->tv_sec) * 1000000u +
	       (uint64_t)((now.tv_nsec - t0->tv_nsec) / 1000);
}
