/* COM1's interrupt reaches the guest through kite's irqchip: with THRE interrupts
 * enabled, IRQ 4 is routed by the IOAPIC to a vector; reading IIR acknowledges it
 * and each byte written raises it again (how Linux's 8250 driver transmits).
 * Every interrupt is seen pending in the LAPIC's IRR before `sti; hlt`, so a
 * missing one fails an assertion instead of hanging. */
#include "guest.h"

#define COM1 0x3f8
#define VEC_COM1 0x50
#define VEC_SPURIOUS 0xff

static volatile uint32_t hits, spurious_hits;
static volatile uint8_t iir_in_handler;

__attribute__((interrupt)) static void com1_isr(struct interrupt_frame *f)
{
	(void)f;
	hits++;
	iir_in_handler = inb(COM1 + 2); /* acknowledges the THRE interrupt */
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f)
{
	(void)f;
	spurious_hits++;
}

int main(void)
{
	idt_set_gate(VEC_COM1, com1_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	/* Only the IOAPIC path: mask both 8259s (their vectors are not set up). */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);

	/* Pin 4 (ISA IRQ 4, no override in the MADT): edge, active high, fixed, to APIC 0. */
	GUEST_ASSERT(((ioapic_read(0x01) >> 16) & 0xff) >= 15); /* at least 16 pins */
	ioapic_write(0x10 + 2 * 4 + 1, 0);
	ioapic_write(0x10 + 2 * 4, VEC_COM1);
	GUEST_ASSERT_EQ(ioapic_read(0x10 + 2 * 4) & 0x100ff, VEC_COM1);

	outb(COM1 + 3, 0x03); /* 8N1, DLAB off */
	outb(COM1 + 4, 0x08); /* OUT2: the PC wiring that gates the UART's IRQ line */
	GUEST_ASSERT(!lapic_irr_has(VEC_COM1));

	/* Enabling THRE interrupts with the transmitter empty raises one at once. */
	outb(COM1 + 1, 0x02);
	GUEST_ASSERT(lapic_irr_has(VEC_COM1));
	irq_enable_and_halt();
	GUEST_ASSERT_EQ(hits, 1);
	GUEST_ASSERT_EQ(iir_in_handler & 0x0f, 0x02); /* THRE */
	GUEST_ASSERT_EQ(inb(COM1 + 2) & 0x0f, 0x01);  /* acknowledged: none pending */

	/* Each transmitted byte empties the holding register again: one more interrupt. */
	outb(COM1, '.');
	GUEST_ASSERT(lapic_irr_has(VEC_COM1));
	irq_enable_and_halt();
	GUEST_ASSERT_EQ(hits, 2);
	GUEST_ASSERT_EQ(iir_in_handler & 0x0f, 0x02);

	/* Interrupts off in IER: a byte sent raises nothing. */
	outb(COM1 + 1, 0x00);
	outb(COM1, '\n');
	GUEST_ASSERT(!lapic_irr_has(VEC_COM1));
	GUEST_ASSERT_EQ(hits, 2);
	GUEST_ASSERT_EQ(spurious_hits, 0);
	return 0;
}
