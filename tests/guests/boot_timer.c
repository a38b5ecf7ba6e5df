/* Firecracker's boot-timer register: the magic byte 123 at 0xC0000000 makes kite
 * log the boot time (only with --boot-timer); other values log nothing; the
 * register is write-only. */
#include "guest.h"

#define BOOT_TIMER 0xc0000000ULL

int main(void)
{
	mmio_write8(BOOT_TIMER, 0x00);
	mmio_write8(BOOT_TIMER + 1, 123); /* not the register: no log line */
	GUEST_ASSERT_EQ(mmio_read32(BOOT_TIMER), 0xffffffffu);
	guest_print("boot-timer: writing 123");
	mmio_write8(BOOT_TIMER, 123);
	guest_print("boot-timer: still running");
	return 0;
}
