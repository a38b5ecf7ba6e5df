/* HLT with kite's in-kernel LAPIC: an interrupt already pending (a self-IPI)
 * ends HLT at once; a one-shot LAPIC timer wakes a vCPU that really halted.
 * Interrupts stay off until the `sti; hlt` pair, so no wake-up can be lost. */
#include "guest.h"

#define VEC_IPI 0x40
#define VEC_TIMER 0x41
#define VEC_SPURIOUS 0xff
#define TIMER_COUNT 100000000u /* 100 ms at KVM's 1 GHz APIC bus, divide by 1: long enough
				     * that reading it back before HLT never finds it expired */

static volatile uint32_t ipi_hits, timer_hits, spurious_hits;

__attribute__((interrupt)) static void ipi_isr(struct interrupt_frame *f)
{
	(void)f;
	ipi_hits++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void timer_isr(struct interrupt_frame *f)
{
	(void)f;
	timer_hits++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f)
{
	(void)f;
	spurious_hits++;
}

int main(void)
{
	idt_set_gate(VEC_IPI, ipi_isr);
	idt_set_gate(VEC_TIMER, timer_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* software-enable the LAPIC */

	/* A fixed self-IPI stays pending in IRR while interrupts are off. */
	lapic_write(LAPIC_ICR_LO, (1u << 18) | VEC_IPI);
	GUEST_ASSERT(lapic_irr_has(VEC_IPI));
	GUEST_ASSERT_EQ(ipi_hits, 0);
	irq_enable_and_halt();
	GUEST_ASSERT_EQ(ipi_hits, 1);
	GUEST_ASSERT(!lapic_irr_has(VEC_IPI));

	/* One-shot timer: still counting when we halt, so only its interrupt can end
	 * the HLT; a HLT that returned early would find no timer interrupt yet. */
	lapic_write(LAPIC_TIMER_DIV, 0xb);
	lapic_write(LAPIC_LVT_TIMER, VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, TIMER_COUNT);
	GUEST_ASSERT(lapic_read(LAPIC_TIMER_CUR) > 0);
	irq_enable_and_halt();
	GUEST_ASSERT_EQ(timer_hits, 1);
	GUEST_ASSERT_EQ(lapic_read(LAPIC_TIMER_CUR), 0);
	GUEST_ASSERT_EQ(spurious_hits, 0);
	return 0;
}
