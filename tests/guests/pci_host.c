/* PCI configuration mechanism #1: the 0xCF8 address latch reads back, and the
 * host bridge at 00:00.0 shows its ids; empty slots read all-ones. */
#include "guest.h"

#define CFG_ADDR 0xcf8
#define CFG_DATA 0xcfc

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read32(unsigned slot, unsigned reg)
{
	outl(CFG_ADDR, cfg_addr(0, slot, 0, reg));
	return inl(CFG_DATA);
}

int main(void)
{
	/* The latch holds any dword written to it. */
	outl(CFG_ADDR, 0x80001234u);
	GUEST_ASSERT_EQ(inl(CFG_ADDR), 0x80001234u);
	outl(CFG_ADDR, 0);
	GUEST_ASSERT_EQ(inl(CFG_ADDR), 0);

	/* Host bridge: vendor 0x1b36 (Red Hat), device 0x0008, class 06 00. */
	GUEST_ASSERT_EQ(cfg_read32(0, 0x00), 0x00081b36u);
	GUEST_ASSERT_EQ(cfg_read32(0, 0x08) >> 16, 0x0600);
	GUEST_ASSERT_EQ(cfg_read32(0, 0x0c) >> 16 & 0x7f, 0); /* header type 0 */

	/* Narrow reads at an offset inside the data window. */
	outl(CFG_ADDR, cfg_addr(0, 0, 0, 0));
	GUEST_ASSERT_EQ(inw(CFG_DATA), 0x1b36);
	GUEST_ASSERT_EQ(inw(CFG_DATA + 2), 0x0008);
	GUEST_ASSERT_EQ(inb(CFG_DATA + 1), 0x1b);
	outl(CFG_ADDR, cfg_addr(0, 0, 0, 0x08));
	GUEST_ASSERT_EQ(inb(CFG_DATA + 3), 0x06);

	/* Nothing there: an empty slot, another function, another bus, the enable bit clear. */
	GUEST_ASSERT_EQ(cfg_read32(31, 0x00), 0xffffffffu);
	outl(CFG_ADDR, cfg_addr(0, 0, 1, 0));
	GUEST_ASSERT_EQ(inl(CFG_DATA), 0xffffffffu);
	outl(CFG_ADDR, cfg_addr(1, 0, 0, 0));
	GUEST_ASSERT_EQ(inl(CFG_DATA), 0xffffffffu);
	outl(CFG_ADDR, cfg_addr(0, 0, 0, 0) & ~0x80000000u);
	GUEST_ASSERT_EQ(inl(CFG_DATA), 0xffffffffu);
	return 0;
}
