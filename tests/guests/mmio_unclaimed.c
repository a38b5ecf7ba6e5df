/* MMIO in the 32-bit hole that no device claims reads as all-ones at every
 * width; writes there are dropped. */
#include "guest.h"

static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)a; }

int main(void)
{
	/* Inside the PCI BAR window with no BAR there, and just below the IOAPIC. */
	static const uint64_t addrs[] = {0xd0000000ULL, 0xc0001000ULL, 0xfebff000ULL};
	for (unsigned i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		uint64_t a = addrs[i];
		mmio_write32(a, 0x12345678u);
		GUEST_ASSERT_EQ(mmio_read8(a), 0xff);
		GUEST_ASSERT_EQ(mmio_read16(a + 2), 0xffff);
		GUEST_ASSERT_EQ(mmio_read32(a), 0xffffffffu);
		GUEST_ASSERT_EQ(mmio_read64(a), 0xffffffffffffffffULL);
	}
	return 0;
}
