/* The i8042 keyboard controller from inside, the way Linux's i8042 and atkbd
 * drivers find and set it up: A20 and the null command through the output port,
 * flush, self-test, CTR read/write, keyboard interface test, then the keyboard's
 * identify/LEDs/typematic/enable answers, first polled, then through IRQ 1 routed
 * by the IOAPIC, with and without set 2 -> set 1 translation.
 *
 * With the command line "outport-reset" it writes the output port with the reset
 * bit clear instead, which must end the VM. */
#include "guest.h"

#define DATA 0x60
#define CMD 0x64
#define STR_OBF 0x01
#define STR_IBF 0x02
#define STR_SYS 0x04
#define STR_CMD 0x08
#define STR_UNLOCKED 0x10
#define STR_AUXDATA 0x20
#define CTR_KBDINT 0x01
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_XLATE 0x40
#define ACK 0xfa

#define VEC_KBD 0x51
#define VEC_SPURIOUS 0xff
#define SPIN 100000 /* kite answers at once; a real 8042 within microseconds */

static volatile uint32_t hits, spurious_hits;
static volatile uint8_t got[16];

__attribute__((interrupt)) static void kbd_isr(struct interrupt_frame *f)
{
	(void)f;
	uint8_t b = inb(DATA);
	if (hits < sizeof(got))
		got[hits] = b;
	hits++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f)
{
	(void)f;
	spurious_hits++;
}

static void wait_write(void)
{
	for (int i = 0; i < SPIN; i++)
		if (!(inb(CMD) & STR_IBF))
			return;
	GUEST_ASSERT(!"the input buffer stays full");
}

static uint8_t read_answer(void)
{
	for (int i = 0; i < SPIN; i++) {
		uint8_t st = inb(CMD);
		if (st & STR_OBF) {
			GUEST_ASSERT_EQ(st & STR_AUXDATA, 0); /* there is no mouse */
			return inb(DATA);
		}
	}
	GUEST_ASSERT(!"no answer in the output buffer");
	return 0;
}

static void command(uint8_t c)
{
	wait_write();
	outb(CMD, c);
}

static void data(uint8_t b)
{
	wait_write();
	outb(DATA, b);
}

static uint8_t read_ctr(void)
{
	command(0x20);
	return read_answer();
}

static void write_ctr(uint8_t ctr)
{
	command(0x60);
	data(ctr);
	GUEST_ASSERT_EQ(read_ctr(), ctr);
}

static void expect_empty(void)
{
	GUEST_ASSERT_EQ(inb(CMD) & STR_OBF, 0);
}

/* A keyboard command answered with n bytes, read by polling. */
static void kbd_polled(uint8_t b, const uint8_t *want, unsigned n)
{
	data(b);
	for (unsigned i = 0; i < n; i++)
		GUEST_ASSERT_EQ(read_answer(), want[i]);
	expect_empty();
}

/* The same answered through IRQ 1: each byte raises the interrupt, the handler
 * reads it. An interrupt is always seen pending before `sti; hlt`, so a missing
 * one fails an assertion instead of hanging. */
static void kbd_irq(uint8_t b, const uint8_t *want, unsigned n)
{
	hits = 0;
	data(b);
	while (hits < n) {
		GUEST_ASSERT(lapic_irr_has(VEC_KBD));
		irq_enable_and_halt();
	}
	GUEST_ASSERT_EQ(hits, n);
	for (unsigned i = 0; i < n; i++)
		GUEST_ASSERT_EQ(got[i], want[i]);
	GUEST_ASSERT(!lapic_irr_has(VEC_KBD));
	expect_empty();
}

#define POLLED(b, ...) do { const uint8_t w_[] = {__VA_ARGS__}; kbd_polled((b), w_, sizeof(w_)); } while (0)
#define IRQ(b, ...) do { const uint8_t w_[] = {__VA_ARGS__}; kbd_irq((b), w_, sizeof(w_)); } while (0)

int main(void)
{
	if (str_eq(boot_cmdline(), "outport-reset")) {
		command(0xd1);
		data(0xfe); /* output port bit 0 clear: the CPU is held in reset */
		GUEST_ASSERT(!"the VM is still running after the output port reset");
	}

	/* Power-on: nothing waits, never busy, system flag, not key-locked. */
	uint8_t st = inb(CMD);
	GUEST_ASSERT_EQ(st & (STR_OBF | STR_IBF | STR_SYS | STR_UNLOCKED),
			STR_SYS | STR_UNLOCKED);

	/* Linux's i8042_platform_init(): A20 on through the output port, then
	 * 0xFF, the "null command" for SMM firmware. Neither resets. */
	command(0xd1);
	data(0xdf);
	command(0xff);
	command(0xd0);
	GUEST_ASSERT_EQ(read_answer(), 0xdf);
	GUEST_ASSERT(inb(CMD) & STR_CMD); /* the last write went to 0x64 */

	/* i8042_controller_check(): a flush that ends. */
	expect_empty();

	command(0xaa);
	GUEST_ASSERT_EQ(read_answer(), 0x55);

	/* i8042_controller_init(): two equal CTR reads, translation on, then the
	 * keyboard disabled with its interrupt off while the driver sets up. */
	uint8_t ctr = read_ctr();
	GUEST_ASSERT_EQ(read_ctr(), ctr);
	GUEST_ASSERT(ctr & CTR_XLATE);
	GUEST_ASSERT(ctr & CTR_SYS);
	ctr = (uint8_t)((ctr | CTR_KBDDIS) & ~CTR_KBDINT);
	write_ctr(ctr);
	expect_empty();
	command(0xab);
	GUEST_ASSERT_EQ(read_answer(), 0x00);
	command(0xa9);
	GUEST_ASSERT(read_answer() != 0x00); /* no aux port */

	/* The keyboard, polled: identify (0x83 translated to 0x41), echo, reset. */
	POLLED(0xf2, ACK, 0xab, 0x41);
	POLLED(0xee, 0xee);
	POLLED(0xff, ACK, 0xaa);

	/* IRQ 1 through the IOAPIC only: mask both 8259s. Pin 1: edge, active
	 * high, fixed, to APIC 0 (the MADT's identity override). */
	idt_set_gate(VEC_KBD, kbd_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	ioapic_write(0x10 + 2 * 1 + 1, 0);
	ioapic_write(0x10 + 2 * 1, VEC_KBD);

	/* With the keyboard interrupt off, answers wait without an interrupt. */
	data(0xf4);
	GUEST_ASSERT(inb(CMD) & STR_OBF);
	GUEST_ASSERT(!lapic_irr_has(VEC_KBD));
	GUEST_ASSERT_EQ(read_answer(), ACK);

	/* i8042_enable_kbd_port(), then what atkbd sends. */
	ctr = (uint8_t)((ctr & ~CTR_KBDDIS) | CTR_KBDINT);
	write_ctr(ctr);
	GUEST_ASSERT(lapic_irr_has(VEC_KBD)); /* the CTR answer itself raised IRQ 1 ... */
	irq_enable_and_halt();          /* ... and the handler finds nothing left */
	GUEST_ASSERT(!lapic_irr_has(VEC_KBD));
	IRQ(0xf2, ACK, 0xab, 0x41); /* identify */
	IRQ(0xf5, ACK);             /* deactivate */
	IRQ(0xed, ACK);             /* LEDs ... */
	IRQ(0x00, ACK);             /* ... off */
	IRQ(0xf3, ACK);             /* typematic ... */
	IRQ(0x00, ACK);             /* ... fastest */
	IRQ(0xf4, ACK);             /* activate */

	/* Without translation the keyboard's own bytes come through. */
	write_ctr(ctr & ~CTR_XLATE);
	irq_enable_and_halt(); /* the CTR answer's interrupt */
	IRQ(0xf2, ACK, 0xab, 0x83);
	IRQ(0xf0, ACK);
	IRQ(0x00, ACK, 0x02); /* scan code set 2 */
	write_ctr(ctr);
	irq_enable_and_halt();

	/* 0xD2: a byte as if the keyboard sent it, with its interrupt. */
	command(0xd2);
	IRQ(0x1d, 0x1d);

	GUEST_ASSERT_EQ(spurious_hits, 0);
	return 0;
}
