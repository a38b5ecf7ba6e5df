/* A known number of exits of each kind, for the trap accounting (kite
 * --stats-file): port writes to COM1's scratch register, port reads of an
 * unclaimed port, MMIO reads in the PCI BAR window where no BAR is, MMIO writes
 * to unmapped memory above RAM, and HLTs ended by a pending self-IPI (KVM
 * handles those in the kernel and counts them itself). The counts are also
 * printed on the console for the test to compare. */
#include "guest.h"

#define N_SERIAL 37
#define N_UNCLAIMED_PIO 23
#define N_BAR_WINDOW 19
#define N_UNMAPPED 11
#define N_HLT 13
#define VEC_IPI 0x40
#define VEC_SPURIOUS 0xff

static volatile uint32_t ipi_hits;

__attribute__((interrupt)) static void ipi_isr(struct interrupt_frame *f)
{
	(void)f;
	ipi_hits++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f) { (void)f; }

int main(void)
{
	idt_set_gate(VEC_IPI, ipi_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);

	for (int i = 0; i < N_SERIAL; i++)
		outb(0x3ff, (uint8_t)i); /* COM1 scratch register */
	for (int i = 0; i < N_UNCLAIMED_PIO; i++)
		(void)inb(0x510);
	for (int i = 0; i < N_BAR_WINDOW; i++)
		(void)mmio_read32(0xfeb00000ULL);
	for (int i = 0; i < N_UNMAPPED; i++)
		mmio_write32(0x10000000ULL, (uint32_t)i); /* above --mem 64, below the hole */
	for (int i = 0; i < N_HLT; i++) {
		lapic_write(LAPIC_ICR_LO, (1u << 18) | VEC_IPI);
		irq_enable_and_halt();
	}
	GUEST_ASSERT_EQ(ipi_hits, N_HLT);
	return 0;
}
