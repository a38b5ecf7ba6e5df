/* Ports no device claims read as all-ones at every width (a floating ISA bus),
 * and writes to them are dropped without stopping the guest. */
#include "guest.h"

int main(void)
{
	/* COM2, LPT1, a gameport, the byte after the test device's range. */
	static const uint16_t ports[] = {0x2f8, 0x2fd, 0x378, 0x201, 0xf8, 0x510};
	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		uint16_t p = ports[i];
		outb(p, 0x00);
		outl(p, 0);
		GUEST_ASSERT_EQ(inb(p), 0xff);
		GUEST_ASSERT_EQ(inw(p), 0xffff);
		GUEST_ASSERT_EQ(inl(p), 0xffffffffu);
	}
	/* A 4-byte read straddling the end of COM1's range (0x3f8-0x3ff) is not COM1's. */
	GUEST_ASSERT_EQ(inl(0x3fe), 0xffffffffu);
	return 0;
}
