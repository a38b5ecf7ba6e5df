/* Guest-physical addresses above RAM and below the MMIO hole have no memory
 * behind them: reads return all-ones, writes vanish, kite keeps running.
 * Run with --mem 64. */
#include "guest.h"

#define RAM_END (64ULL << 20)

int main(void)
{
	/* The last RAM byte is memory: it keeps what is written. */
	mmio_write8(RAM_END - 1, 0x5a);
	GUEST_ASSERT_EQ(mmio_read8(RAM_END - 1), 0x5a);

	static const uint64_t addrs[] = {RAM_END, RAM_END + 0x1000, 0x80000000ULL, 0xbffff000ULL};
	for (unsigned i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		uint64_t a = addrs[i];
		GUEST_ASSERT_EQ(mmio_read32(a), 0xffffffffu);
		mmio_write32(a, 0);
		GUEST_ASSERT_EQ(mmio_read32(a), 0xffffffffu);
		GUEST_ASSERT_EQ(mmio_read8(a + 3), 0xff);
	}
	return 0;
}
