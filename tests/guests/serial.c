/* COM1 as the Linux 8250 driver probes it: scratch register, divisor latch,
 * line status, loopback; then one known line on the console (checked on stdout). */
#include "guest.h"

#define COM1 0x3f8
#define THR 0
#define IER 1
#define IIR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define SCR 7

int main(void)
{
	/* The scratch register keeps whatever is written: 8250 tells 16450+ from 8250 by it. */
	outb(COM1 + SCR, 0xa5);
	GUEST_ASSERT_EQ(inb(COM1 + SCR), 0xa5);
	outb(COM1 + SCR, 0x5a);
	GUEST_ASSERT_EQ(inb(COM1 + SCR), 0x5a);

	/* Transmitter empty, nothing received (stdin is not a terminal or pipe). */
	uint8_t lsr = inb(COM1 + LSR);
	GUEST_ASSERT_EQ(lsr & 0x20, 0x20); /* THRE */
	GUEST_ASSERT_EQ(lsr & 0x40, 0x40); /* TEMT */
	GUEST_ASSERT_EQ(lsr & 0x01, 0);    /* DR */
	GUEST_ASSERT_EQ(inb(COM1 + IIR) & 0x0f, 0x01); /* no interrupt pending */

	/* Divisor latch behind DLAB, and LCR reads back. */
	outb(COM1 + LCR, 0x80);
	outb(COM1 + THR, 0x01);
	outb(COM1 + IER, 0x00);
	GUEST_ASSERT_EQ(inb(COM1 + THR), 0x01);
	GUEST_ASSERT_EQ(inb(COM1 + IER), 0x00);
	outb(COM1 + LCR, 0x03);
	GUEST_ASSERT_EQ(inb(COM1 + LCR), 0x03);
	GUEST_ASSERT_EQ(inb(COM1 + IER), 0x00);

	/* Loopback: a sent byte comes back as received data and never reaches the console. */
	outb(COM1 + MCR, 0x10 | 0x08);
	outb(COM1 + THR, '#');
	GUEST_ASSERT_EQ(inb(COM1 + LSR) & 0x01, 0x01);
	GUEST_ASSERT_EQ(inb(COM1 + THR), '#');
	GUEST_ASSERT_EQ(inb(COM1 + LSR) & 0x01, 0);
	outb(COM1 + MCR, 0x08);

	serial_puts("kite serial test: 0123456789 ABCDEF\n");
	return 0;
}
