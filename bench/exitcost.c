/* exitcost: the cost of one userspace exit with the least possible VMM.
 *
 *   exitcost [-n N] [-r REPS] [-i]
 *
 * A bare KVM program: one VM, one 2 MiB memslot, one vCPU in 32-bit protected mode
 * (flat segments, paging off, no irqchip), running
 *     test %ecx,%ecx; jz 1f; 0: out %al,$0x80; dec %ecx; jnz 0b; 1: out %al,$0x81
 * with ecx = N: N port-I/O exits to this program, which only counts them, then the
 * exit on port 0x81 that ends the run. With -i the VM also gets the in-kernel
 * irqchip and PIT (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2), as kite creates them: that
 * separates what the KVM configuration costs from what kite's exit path costs. Each repetition times a run with ecx = 0 and one with ecx = N around the
 * KVM_RUN loop, in wall time (CLOCK_MONOTONIC) and in CPU time (the process's user +
 * system time: robust against other load on the host, which only delays us), and
 * takes (T(N) - T(0)) / N as the cost of one exit, the loop's guest instructions
 * included (bench/guests/outloop.S runs the same three instructions under kite).
 * Prints one line per repetition and the medians:
 *     EXITCOST median_us_per_exit WALL
 *     EXITCOST median_cpu_us_per_exit CPU
 * Exit status 0, or 1 with a message when KVM is unusable. */
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
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define CODE_GPA 0x1000u

static const uint8_t guest_code[] = {
	0x85, 0xc9,       /* test %ecx,%ecx */
	0x74, 0x05,       /* jz   done */
	0xe6, 0x80,       /* out  %al,$0x80 */
	0x49,             /* dec  %ecx */
	0x75, 0xfb,       /* jnz  out */
	0xe6, 0x81,       /* out  %al,$0x81: done */
	0xf4,             /* hlt */
};

static void die(const char *what)
{
	fprintf(stderr, "exitcost: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double clock_us(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Runs the loop with ecx = n; returns the wall time of the KVM_RUN loop in us and
 * stores its CPU time in *cpu. */
static double run_once(int vcpu, struct kvm_run *run, uint32_t n, double *cpu)
{
	struct kvm_regs regs;
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 0x2;
	regs.rcx = n;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS");
	uint64_t pio = 0;
	double c = clock_us(CLOCK_PROCESS_CPUTIME_ID);
	double t = clock_us(CLOCK_MONOTONIC);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x80) {
			pio++;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x81)
			break;
		fprintf(stderr, "exitcost: unexpected exit reason %u\n", run->exit_reason);
		exit(1);
	}
	t = clock_us(CLOCK_MONOTONIC) - t;
	*cpu = clock_us(CLOCK_PROCESS_CPUTIME_ID) - c;
	if (pio != n) {
		fprintf(stderr, "exitcost: expected %u port exits, saw %llu\n", n, (unsigned long long)pio);
		exit(1);
	}
	return t;
}

int main(int argc, char **argv)
{
	uint32_t n = 200000;
	int reps = 5, irqchip = 0, opt;
	while ((opt = getopt(argc, argv, "n:r:i")) != -1) {
		switch (opt) {
		case 'n': n = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'r': reps = atoi(optarg); break;
		case 'i': irqchip = 1; break;
		default:
			fprintf(stderr, "usage: exitcost [-n N] [-r REPS] [-i]\n");
			return 2;
		}
	}
	if (n == 0 || reps < 1) {
		fprintf(stderr, "exitcost: N and REPS must be positive\n");
		return 2;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		die("KVM_SET_TSS_ADDR");
	if (irqchip) {
		struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
		if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
			die("KVM_CREATE_IRQCHIP");
		if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
			die("KVM_CREATE_PIT2");
	}
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap guest memory");
	memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
	struct kvm_userspace_memory_region slot = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");

	/* Flat 32-bit protected mode: code and data segments over 4 GiB, paging off. */
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS");
	struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
				   .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
	struct kvm_segment data = code;
	data.selector = 0x10;
	data.type = 0x3;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr0 = 0x11; /* PE | ET */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS");

	double *per = calloc((size_t)reps, sizeof(*per));
	double *per_cpu = calloc((size_t)reps, sizeof(*per_cpu));
	if (!per || !per_cpu)
		die("calloc");
	double c0, cn;
	run_once(vcpu, run, 1000, &c0); /* warm up: fault in the code page, the run area */
	for (int i = 0; i < reps; i++) {
		double t0 = run_once(vcpu, run, 0, &c0);
		double tn = run_once(vcpu, run, n, &cn);
		per[i] = (tn - t0) / n;
		per_cpu[i] = (cn - c0) / n;
		printf("EXITCOST rep %d n %u t0_us %.0f tn_us %.0f us_per_exit %.3f cpu_us_per_exit %.3f\n",
		       i, n, t0, tn, per[i], per_cpu[i]);
	}
	printf("EXITCOST median_us_per_exit %.3f\n", median(per, reps));
	printf("EXITCOST median_cpu_us_per_exit %.3f\n", median(per_cpu, reps));
	return 0;
}
