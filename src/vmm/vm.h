/* The VM: KVM handles, guest memory, device buses, vCPUs, and how it stops.
 * Everything a device may use is declared here and in bus.h / mem.h. */
#ifndef KITE_VM_H
#define KITE_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "stats/stats.h"
#include "util/ratelimit.h"
#include "vmm/seccomp.h"
#include "util/log.h"
#include "vmm/bus.h"
#include "vmm/mem.h"

enum serial_mode { SERIAL_STDIO, SERIAL_NONE, SERIAL_FILE };

#define KITE_MAX_DISKS 16
#define KITE_MAX_NICS 8

/* --disk PATH[,ro][,id=NAME] / PUT /drives/{id}. */
struct disk_config {
	const char *id;     /* drive id; "disk<N>" when not given */
	const char *path;   /* raw image */
	bool read_only;
	const char *serial; /* GET_ID answer (<= 20 bytes); the id when NULL */
	struct rl_config rl; /* rate_limiter: bytes and operations */
	char auto_id[16];   /* storage for a made-up id */
};

/* --net tap=NAME[,mac=MAC][,id=NAME] / PUT /network-interfaces/{id}. */
struct net_config {
	const char *id;
	const char *tap;    /* host TAP device name */
	uint8_t mac[6];
	bool has_mac;       /* else the device makes one up */
	struct rl_config rx_rl, tx_rl; /* rx_rate_limiter, tx_rate_limiter */
	char auto_id[16];
};

/* --vsock cid=N,uds=PATH / PUT /vsock. */
struct vsock_config {
	bool enabled;
	uint32_t cid;       /* guest CID, >= 3 */
	const char *uds_path;
};

/* --balloon MiB / PUT /balloon. */
struct balloon_config {
	bool enabled;
	uint32_t target_mib;      /* amount_mib: how much the guest should give back */
	bool deflate_on_oom;
	uint32_t stats_interval_s; /* 0: no statistics */
};

struct cpu_template;
struct snap_reader;

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t mem_mib;
	enum serial_mode serial;
	const char *serial_path;
	bool boot_timer;
	bool test_device;
	bool no_exit_stats;        /* benchmarking: no per-exit timing */
	struct seccomp_opts seccomp; /* after set-up: default filter, none, or a file */
	enum gmem_backing huge_pages; /* --huge-pages / machine-config huge_pages */
	bool ksm;                  /* --ksm: guest RAM MADV_MERGEABLE */
	/* --vcpu-affinity: vCPU i runs on host CPU affinity[i % nr_affinity]. */
	int affinity[256];
	unsigned nr_affinity;
	/* --vcpu-sched: SCHED_OTHER (default), _BATCH, _IDLE with a nice value,
	 * or SCHED_FIFO/_RR with a priority. */
	int sched_policy;
	int sched_prio;            /* priority (FIFO/RR) or nice (OTHER/BATCH) */
	bool sched_set;
	const char *stats_path;    /* write the final /stats JSON here at exit */
	struct disk_config disks[KITE_MAX_DISKS];
	unsigned nr_disks;
	struct net_config nics[KITE_MAX_NICS];
	unsigned nr_nics;
	struct vsock_config vsock;
	bool rng;
	struct rl_config rng_rl;   /* PUT /entropy rate_limiter */
	struct balloon_config balloon;
	struct cpu_template *cpu_template; /* --cpu-template / PUT /cpu-config; NULL: none */
	const char *gdb;           /* --gdb tcp:HOST:PORT or unix:PATH: the gdb stub listens there */
	struct timespec exec_time; /* when the process started: boot timer reference */
	bool track_dirty;          /* machine-config track_dirty_pages: KVM's dirty log, VMM writes tracked */
	/* Snapshot load: guest RAM from restore_mem_fd (MAP_PRIVATE), the state from
	 * restore; no kernel is loaded. start_paused: the vCPUs wait for a resume. */
	const struct snap_reader *restore;
	bool restoring;            /* memory and state come from a snapshot or a migration */
	int restore_mem_fd;
	void *restore_mem_base;    /* or RAM already filled (migration): the VM takes it over */
	bool restore_mem_uffd;     /* ... whose pages a userfaultfd handler fills (Uffd backend) */
	bool restore_clock_realtime;
	bool start_paused;
};

struct vm;
struct pci_bus;
struct virtio_dev;
struct gdb_stub;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	pid_t tid;      /* the thread's id, set as it starts */
	bool started;
	bool held;  /* parked by the debugger while other vCPUs run (under vm->stop.lock) */
	/* Exit counters, written by this vCPU's thread only (relaxed atomics so
	 * the metrics thread may read them). */
	uint64_t exits_io_in, exits_io_out, exits_mmio_read, exits_mmio_write, exits_other;
	struct vcpu_stats st; /* trap accounting (stats/stats.h) */
};

/* How the VM ended, set once by the first stopper. */
struct vm_stop {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool requested;
	int exit_code;
	char reason[160];
};

struct vm {
	const struct vm_config *cfg;
	int kvm_fd, vm_fd;
	int run_size;
	unsigned max_vcpus;
	struct gmem mem;
	struct bus pio, mmio;
	struct pci_bus *pci;               /* bus 0, set by the pci device */
	struct virtio_dev *virtio[32];     /* in creation order */
	unsigned nr_virtio;
	struct vm_stats *stats;            /* sampler and KVM statistics */
	/* GSI routing: KVM's default irqchip routes plus one MSI route per
	 * allocated GSI (MSI-X vectors behind irqfds). Under gsi_lock. */
	pthread_mutex_t gsi_lock;
	struct kvm_irq_routing *routing;
	unsigned next_gsi;
	struct vcpu *vcpus;
	unsigned nr_vcpus;
	struct kvm_cpuid2 *supported_cpuid;
	bool tsc_deadline;
	struct vm_stop stop;
	/* vCPU threads wait for this before their first KVM_RUN: set once the
	 * VM is locked down (seccomp), so the guest never runs unfiltered. */
	bool released;
	/* Pause: vCPUs park outside KVM_RUN (under stop.lock) while set. */
	bool paused;
	unsigned parked;
	struct gdb_stub *gdb;              /* --gdb, or NULL */
	/* Boot entry for the BSP, filled by the loader. */
	int boot_mode;
	uint64_t boot_entry;
};

/* Zeroes the VM and prepares its locks and buses; first call on a struct vm. */
void vm_init(struct vm *vm);
/* Opens /dev/kvm and checks the API; errors carry KITE_EXIT_KVM. */
int kvm_open(struct vm *vm, struct kite_err *err);
int vm_create(struct vm *vm, const struct vm_config *cfg, struct kite_err *err);
void vm_destroy(struct vm *vm);

/* Asks the VM to stop with this exit code; the first call wins. Safe from any thread. */
void vm_request_stop(struct vm *vm, int exit_code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool vm_stopping(struct vm *vm);

/* (Re)registers every RAM region as a KVM memslot with these flags (0, or
 * KVM_MEM_LOG_DIRTY_PAGES). 0 or -1 (errno). */
int vm_set_memslots(struct vm *vm, uint32_t flags);

/* Drives a GSI line of the in-kernel IOAPIC/PIC. */
void vm_irq_set(struct vm *vm, unsigned gsi, int level);
/* A fresh GSI above the IOAPIC's pins for an MSI route, or -1 when none is left. */
int vm_gsi_alloc(struct vm *vm);
/* Points an allocated GSI at an MSI message (address, data). 0 or -1. */
int vm_gsi_set_msi(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);

int vcpus_create(struct vm *vm, struct kite_err *err);
int vcpus_start(struct vm *vm, struct kite_err *err);
/* Stops every vCPU thread and joins it. */
void vcpus_stop(struct vm *vm);
/* Parks every vCPU outside KVM_RUN and returns once all are parked; resume
 * lets them run again. From a thread that is not a vCPU. */
void vcpus_pause(struct vm *vm);
/* Lets vCPU threads started by vcpus_start() enter the guest. */
void vcpus_release(struct vm *vm);
void vcpus_resume(struct vm *vm);

/* x86: registers, MSRs, FPU, LAPIC, CPUID of one vCPU before it runs. */
int cpu_setup(struct vm *vm, struct vcpu *v, struct kite_err *err);
/* Prints the vCPU's registers to stderr (unhandled exits, internal errors). */
void cpu_dump_regs(struct vcpu *v);

/* Microseconds since the process started. */
uint64_t vm_uptime_us(const struct vm *vm);

#endif
