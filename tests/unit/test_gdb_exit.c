/* gdb_debug_exit, the vCPU thread's half of the stub, on a real KVM vCPU
 * (skipped without a usable /dev/kvm). A debug exit that is the debugger's is
 * recorded and pauses the VM; a #BP or #DB the debugger did not cause is
 * reinjected, and the proof is the guest's own handler running: after the exit,
 * the vCPU's next KVM_RUN must land in the handler the guest's IDT names, not at
 * the instruction it stopped on.
 *
 * The VM is kite's own (vm_create, boot page tables, cpu_setup: 64-bit mode),
 * with a few bytes of guest code: the "main" code and each handler write to
 * their own port. The debug exits are written into the run area by hand: the
 * hosts these tests run on cannot make a guest's INT3 exit to kite (see
 * tests/integration/test_gdb.py). */
#include "unit.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "gdb/stub.h"
#include "vmm/vm.h"

#define ENTRY 0x100000
#define BP_HANDLER 0x101000
#define DB_HANDLER 0x101100
#define IDT 0x102000
#define PORT_MAIN 0xe0
#define PORT_BP 0xe3
#define PORT_DB 0xe1

static struct vm_config cfg = {.cpus = 1, .mem_mib = 16};
static struct vm vm;
static struct gdb_stub stub;
static struct gdb_event pending;
static bool stepping;
static bool have_kvm;

/* out %al, $port; hlt */
static void put_code(uint64_t gpa, uint8_t port)
{
	const uint8_t code[] = {0xe6, port, 0xf4};
	assert_int_equal(gmem_write(&vm.mem, gpa, code, sizeof(code)), 0);
}

static void put_gate(unsigned vector, uint64_t handler)
{
	uint8_t g[16] = {0};
	set16(g, (uint16_t)handler);
	set16(g + 2, 0x10); /* kite's 64-bit code segment */
	g[5] = 0x8e;        /* present, DPL 0, interrupt gate */
	set16(g + 6, (uint16_t)(handler >> 16));
	set32(g + 8, (uint32_t)(handler >> 32));
	assert_int_equal(gmem_write(&vm.mem, IDT + vector * 16, g, 16), 0);
}

static int setup(void **state)
{
	(void)state;
	struct kite_err err = {0};
	vm_init(&vm);
	vm.cfg = &cfg;
	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	if (!have_kvm)
		return 0; /* each test skips */
	if (kvm_open(&vm, &err) < 0 || vm_create(&vm, &cfg, &err) < 0 ||
	    cpu_write_boot_tables(&vm.mem) < 0)
		return -1;
	vm.boot_mode = BOOT_LINUX64;
	vm.boot_entry = ENTRY;
	if (vcpus_create(&vm, &err) < 0)
		return -1;
	put_code(ENTRY, PORT_MAIN);
	put_code(BP_HANDLER, PORT_BP);
	put_code(DB_HANDLER, PORT_DB);
	put_gate(1, DB_HANDLER);
	put_gate(3, BP_HANDLER);
	struct kvm_sregs sr;
	if (ioctl(vm.vcpus[0].fd, KVM_GET_SREGS, &sr) < 0)
		return -1;
	sr.idt.base = IDT;
	sr.idt.limit = 256 * 16 - 1;
	if (ioctl(vm.vcpus[0].fd, KVM_SET_SREGS, &sr) < 0)
		return -1;

	pending.kind = GDB_STOP_NONE;
	stepping = false;
	stub = (struct gdb_stub){.vm = &vm, .pending = &pending, .stepping = &stepping};
	pthread_mutex_init(&stub.lock, NULL);
	gdb_bps_init(&stub.bps);
	stub.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	vm.gdb = &stub;
	return stub.wake_fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!have_kvm)
		return 0;
	close(stub.wake_fd);
	pthread_mutex_destroy(&stub.lock);
	vm.gdb = NULL;
	vm_destroy(&vm);
	return 0;
}

static void need_kvm(void)
{
	if (!have_kvm)
		skip();
}

static bool woken(void)
{
	uint64_t n = 0;
	return read(stub.wake_fd, &n, sizeof(n)) == sizeof(n) && n > 0;
}

static void debug_exit(unsigned exception, uint64_t pc, uint64_t dr6)
{
	struct kvm_run *run = vm.vcpus[0].run;
	run->exit_reason = KVM_EXIT_DEBUG;
	run->debug.arch = (struct kvm_debug_exit_arch){.exception = exception, .pc = pc, .dr6 = dr6};
	assert_true(gdb_debug_exit(&vm.vcpus[0]));
}

/* Runs the vCPU to its first port write; returns the port. */
static unsigned run_to_port(void)
{
	struct kvm_run *run = vm.vcpus[0].run;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ioctl(vm.vcpus[0].fd, KVM_RUN, 0), 0);
		if (run->exit_reason == KVM_EXIT_IO)
			return run->io.port;
		assert_int_equal(run->exit_reason, KVM_EXIT_INTR); /* nothing else expected */
	}
	fail_msg("no port write");
	return 0;
}

static void baseline_runs_main(void **state)
{
	(void)state;
	need_kvm();
	assert_int_equal(run_to_port(), PORT_MAIN);
}

static void guest_int3_reaches_the_guest_handler(void **state)
{
	(void)state;
	need_kvm();
	assert_int_equal(gdb_bps_plant(&stub.bps, &vm.mem, 0x100800, 0x100800), 0);
	debug_exit(3, ENTRY, 0); /* not the planted one */
	assert_int_equal(pending.kind, GDB_STOP_NONE);
	assert_false(vm.paused);
	assert_false(woken());
	assert_int_equal(run_to_port(), PORT_BP);
}

static void planted_int3_stops_the_vm(void **state)
{
	(void)state;
	need_kvm();
	assert_int_equal(gdb_bps_plant(&stub.bps, &vm.mem, ENTRY, ENTRY), 0);
	debug_exit(3, ENTRY, 0);
	assert_int_equal(pending.kind, GDB_STOP_SWBP);
	assert_true(pending.addr == ENTRY);
	assert_true(vm.paused); /* this vCPU parks on return; the stub parks the others */
	assert_true(woken());
	/* nothing was given to the guest: with the INT3 taken out it runs its code */
	gdb_bps_unplant_all(&stub.bps, &vm.mem);
	assert_int_equal(run_to_port(), PORT_MAIN);
}

static void guest_debug_trap_reaches_the_guest_handler(void **state)
{
	(void)state;
	need_kvm();
	debug_exit(1, ENTRY, 0xffff4ff0); /* a single-step nobody asked kite for */
	assert_int_equal(pending.kind, GDB_STOP_NONE);
	assert_false(vm.paused);
	assert_int_equal(run_to_port(), PORT_DB);
}

static void requested_step_stops_the_vm(void **state)
{
	(void)state;
	need_kvm();
	stepping = true;
	debug_exit(1, ENTRY, 0xffff4ff0);
	assert_int_equal(pending.kind, GDB_STOP_STEP);
	assert_true(vm.paused);
	assert_true(woken());
	assert_int_equal(run_to_port(), PORT_MAIN);
}

static void watchpoint_hit_stops_the_vm(void **state)
{
	(void)state;
	need_kvm();
	assert_int_equal(gdb_bps_hw_insert(&stub.bps, '2', 0x5000, 4), 0);
	debug_exit(1, ENTRY, 0xffff0ff1);
	assert_int_equal(pending.kind, GDB_STOP_WATCH);
	assert_true(pending.addr == 0x5000);
	assert_true(vm.paused);
	assert_int_equal(run_to_port(), PORT_MAIN);
}

static void no_stub_still_reinjects(void **state)
{
	(void)state;
	need_kvm();
	vm.gdb = NULL;
	debug_exit(3, ENTRY, 0);
	vm.gdb = &stub;
	assert_int_equal(run_to_port(), PORT_BP);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(baseline_runs_main),
		T(guest_int3_reaches_the_guest_handler),
		T(planted_int3_stops_the_vm),
		T(guest_debug_trap_reaches_the_guest_handler),
		T(requested_step_stops_the_vm),
		T(watchpoint_hit_stops_the_vm),
		T(no_stub_still_reinjects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
