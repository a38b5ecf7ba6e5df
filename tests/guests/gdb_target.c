/* A guest for the gdb stub (tests/integration/test_gdb.py): symbols to break on,
 * globals to print and watch, its own INT3 handled by its own #BP handler (which
 * must run even while a debugger has breakpoints planted; "int3" on the command
 * line), and with "spin" on the command line a loop that only a debugger ends (by
 * setting `go`). */
#include "guest.h"

struct interrupt_frame;

volatile uint64_t counter;      /* add() adds to it */
volatile uint32_t watched;      /* written once, for a hardware watchpoint */
volatile uint32_t go;           /* the spin loop waits for the debugger to set it */
volatile uint32_t bp_handled;   /* the guest's own #BP handler ran */
volatile uint64_t spins;

__attribute__((noinline)) uint64_t add(uint64_t a, uint64_t b)
{
	counter += a;
	return a + b;
}

__attribute__((noinline)) void after_int3(void)
{
	__asm__ volatile("" ::: "memory");
}

__attribute__((interrupt)) static void bp_handler(struct interrupt_frame *f)
{
	(void)f;
	bp_handled++;
}

static int has_word(const char *s, const char *w)
{
	unsigned n = str_len(w);
	for (; *s; s++)
		if (mem_eq(s, w, n) && (s[n] == 0 || s[n] == ' '))
			return 1;
	return 0;
}

int main(void)
{
	idt_set_gate(3, bp_handler);
	idt_load();

	GUEST_ASSERT_EQ(add(2, 3), 5);
	GUEST_ASSERT_EQ(counter, 2);

	/* Only asked for where INT3 can run: this project's software KVM cannot
	 * execute it at CPL0 (see triple_fault.c). */
	if (has_word(boot_cmdline(), "int3")) {
		__asm__ volatile("int3" ::: "memory");
		GUEST_ASSERT_EQ(bp_handled, 1);
	}
	after_int3();

	watched = 0x1234;

	if (has_word(boot_cmdline(), "spin")) {
		guest_print("gdb_target: spinning");
		while (!go)
			spins++;
	}
	guest_print("gdb_target: finished");
	return 0;
}
