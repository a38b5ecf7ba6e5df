/* vmcost: what a VM's interrupt-controller set-up costs in wall time, from
 * KVM_CREATE_VM to the process being gone, on this host's KVM.
 *
 *   vmcost [-r REPS] [-m MIB]
 *
 * For each configuration, REPS times (default 7): fork a child that opens /dev/kvm,
 * creates a VM with the configuration, registers MIB (default 128) MiB of
 * anonymous memory as one memslot (before or after the irqchip), creates one vCPU and
 * _exit()s without closing anything, as a VMM ending does. The child reports its
 * set-up time through a pipe; the parent times fork -> waitpid. Prints the medians:
 * set-up, teardown (total - set-up: process exit, which destroys the VM) and total.
 * Configurations: no irqchip; KVM_CREATE_IRQCHIP; KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2
 * (what kite creates); KVM_CAP_SPLIT_IRQCHIP (LAPIC in KVM, PIC/IOAPIC/PIT in the VMM,
 * as QEMU microvm does) -- each with the memslot registered last or first. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { IRQ_NONE, IRQ_FULL, IRQ_FULL_PIT, IRQ_SPLIT };
static const char *irq_name[] = {"no irqchip", "irqchip", "irqchip + PIT", "split irqchip"};

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fail(const char *what)
{
	fprintf(stderr, "vmcost: %s: %s\n", what, strerror(errno));
	_exit(1);
}

/* In the child: build the VM, report the set-up time on fd, exit. */
static void child(int irq, int slot_first, size_t mib, int fd)
{
	double t0 = now_us();
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		fail("KVM_SET_TSS_ADDR");
	void *mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap");
	struct kvm_userspace_memory_region slot = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = mib << 20, .userspace_addr = (uintptr_t)mem};
	if (slot_first && ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");
	if ((irq == IRQ_FULL || irq == IRQ_FULL_PIT) && ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		fail("KVM_CREATE_IRQCHIP");
	if (irq == IRQ_FULL_PIT) {
		struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
		if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
			fail("KVM_CREATE_PIT2");
	}
	if (irq == IRQ_SPLIT) {
		struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
		if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0)
			fail("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)");
	}
	if (!slot_first && ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");
	if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0)
		fail("KVM_CREATE_VCPU");
	double setup = now_us() - t0;
	if (write(fd, &setup, sizeof(setup)) != sizeof(setup))
		fail("write");
	_exit(0);
}

int main(int argc, char **argv)
{
	int reps = 7, opt;
	size_t mib = 128;
	while ((opt = getopt(argc, argv, "r:m:")) != -1) {
		switch (opt) {
		case 'r': reps = atoi(optarg); break;
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: vmcost [-r REPS] [-m MIB]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 1000 || mib < 1) {
		fprintf(stderr, "vmcost: REPS 1..1000, MIB >= 1\n");
		return 2;
	}
	double *setup = calloc((size_t)reps, sizeof(double)), *total = calloc((size_t)reps, sizeof(double)),
	       *tear = calloc((size_t)reps, sizeof(double));
	if (!setup || !total || !tear)
		return 1;
	printf("%-15s %-11s %10s %13s %10s   (median of %d, %zu MiB memslot, ms)\n", "interrupts",
	       "memslot", "set-up", "teardown", "total", reps, mib);
	for (int irq = IRQ_NONE; irq <= IRQ_SPLIT; irq++) {
		for (int slot_first = 0; slot_first <= 1; slot_first++) {
			for (int i = 0; i < reps; i++) {
				int p[2];
				if (pipe(p) < 0)
					fail("pipe");
				double t0 = now_us();
				pid_t pid = fork();
				if (pid < 0)
					fail("fork");
				if (pid == 0) {
					close(p[0]);
					child(irq, slot_first, mib, p[1]);
				}
				close(p[1]);
				int st;
				while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
					;
				total[i] = now_us() - t0;
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
				    read(p[0], &setup[i], sizeof(setup[i])) != sizeof(setup[i])) {
					fprintf(stderr, "vmcost: %s failed\n", irq_name[irq]);
					return 1;
				}
				close(p[0]);
				tear[i] = total[i] - setup[i];
			}
			printf("%-15s %-11s %10.2f %13.2f %10.2f\n", irq_name[irq], slot_first ? "first" : "last",
			       median(setup, reps) / 1000, median(tear, reps) / 1000, median(total, reps) / 1000);
		}
	}
	return 0;
}
