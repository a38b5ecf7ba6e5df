/* virtio-pci from the driver's side, against kite --rng: capabilities, feature
 * negotiation (FEATURES_OK refused without VERSION_1), one request answered
 * through the ioeventfd and an MSI-X interrupt through the irqfd, then hostile
 * requests (a descriptor loop, a queue size that is not a power of two, a ring
 * outside RAM) that must put the device in NEEDS_RESET, not stop the VMM; after
 * a reset the device works again. */
#include "guest.h"

#define CFG_ADDR 0xcf8
#define CFG_DATA 0xcfc
#define VEC_RNG 0x41
#define VEC_SPURIOUS 0xff

/* Guest RAM for the rings and the buffer, well above the image. */
#define DESC 0x400000ULL
#define AVAIL 0x401000ULL
#define USED 0x402000ULL
#define BUF 0x403000ULL
#define QSIZE 8

static uint32_t cfg_addr(unsigned slot, unsigned reg) { return 0x80000000u | slot << 11 | (reg & 0xfc); }
static uint32_t cfg_read32(unsigned slot, unsigned reg)
{
	outl(CFG_ADDR, cfg_addr(slot, reg));
	return inl(CFG_DATA);
}
static uint8_t cfg_read8(unsigned slot, unsigned reg) { return (uint8_t)(cfg_read32(slot, reg & ~3u) >> (8 * (reg & 3))); }
static void cfg_write16(unsigned slot, unsigned reg, uint16_t v)
{
	outl(CFG_ADDR, cfg_addr(slot, reg));
	outw((uint16_t)(CFG_DATA + (reg & 2)), v);
}

static uint64_t common, notify, isr, devcfg;
static uint32_t notify_mult;

static void w8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static void w16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static void w32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static uint8_t r8(uint64_t a) { return *(volatile uint8_t *)a; }
static uint16_t r16(uint64_t a) { return *(volatile uint16_t *)a; }
static uint32_t r32(uint64_t a) { return *(volatile uint32_t *)a; }

/* common configuration fields */
#define DFSEL 0x00
#define DF 0x04
#define GFSEL 0x08
#define GF 0x0c
#define MSIX_CFG 0x10
#define NUMQ 0x12
#define STATUS 0x14
#define QSEL 0x16
#define QSZ 0x18
#define QMSIX 0x1a
#define QEN 0x1c
#define QNOFF 0x1e
#define QDESC 0x20
#define QAVAIL 0x28
#define QUSED 0x30

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static volatile uint32_t rng_irqs;

__attribute__((interrupt)) static void rng_isr(struct interrupt_frame *f)
{
	(void)f;
	rng_irqs++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f) { (void)f; }

static void set_status(uint8_t s) { w8(common + STATUS, s); }

/* Negotiates VERSION_1 (bit 32) only. Returns the status after FEATURES_OK. */
static uint8_t negotiate(uint32_t hi_features)
{
	set_status(0);
	GUEST_ASSERT_EQ(r8(common + STATUS), 0);
	set_status(1);
	set_status(1 | 2);
	w32(common + GFSEL, 0);
	w32(common + GF, 0);
	w32(common + GFSEL, 1);
	w32(common + GF, hi_features);
	set_status(1 | 2 | 8);
	return r8(common + STATUS);
}

/* Sets up queue 0 with the given size and rings, MSI-X vector 1, DRIVER_OK. */
static void queue_up(uint16_t size, uint64_t desc)
{
	w16(common + QSEL, 0);
	GUEST_ASSERT_EQ(r16(common + QSZ), 256); /* the device's maximum */
	w16(common + QSZ, size);
	w16(common + QMSIX, 1);
	GUEST_ASSERT_EQ(r16(common + QMSIX), 1);
	w32(common + QDESC, (uint32_t)desc);
	w32(common + QDESC + 4, (uint32_t)(desc >> 32));
	w32(common + QAVAIL, (uint32_t)AVAIL);
	w32(common + QAVAIL + 4, 0);
	w32(common + QUSED, (uint32_t)USED);
	w32(common + QUSED + 4, 0);
	w16(common + QEN, 1);
	for (int i = 0; i < 0x2000; i++)
		w8(AVAIL + (uint64_t)i, 0); /* clears avail and used */
	set_status(1 | 2 | 8 | 4);
}

static void kick(void) { w16(notify + r16(common + QNOFF) * notify_mult, 0); }

/* Waits (bounded) until the device's status shows NEEDS_RESET. */
static int wait_needs_reset(void)
{
	for (long i = 0; i < 20000000; i++)
		if (r8(common + STATUS) & 64)
			return 1;
	return 0;
}

int main(void)
{
	idt_set_gate(VEC_RNG, rng_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);

	/* Find 1af4:1044 (virtio 1.x entropy device). */
	unsigned slot = 0;
	for (unsigned s = 1; s < 32 && !slot; s++)
		if (cfg_read32(s, 0) == 0x10441af4u)
			slot = s;
	GUEST_ASSERT(slot != 0);
	GUEST_ASSERT_EQ(cfg_read8(slot, 0x08), 1);          /* revision: modern */
	GUEST_ASSERT(cfg_read32(slot, 0x04) & (0x10u << 16)); /* capability list */
	uint64_t bar0 = cfg_read32(slot, 0x10) & ~0xfu;
	GUEST_ASSERT(bar0 >= 0xc0001000ULL && bar0 < 0xfec00000ULL);

	/* Walk the capabilities: the four virtio structures and MSI-X. */
	unsigned msix = 0, seen = 0;
	for (unsigned p = cfg_read8(slot, 0x34), n = 0; p && n < 48; p = cfg_read8(slot, p + 1), n++) {
		uint8_t id = cfg_read8(slot, p);
		if (id == 0x11)
			msix = p;
		if (id != 0x09)
			continue;
		uint8_t type = cfg_read8(slot, p + 3);
		GUEST_ASSERT_EQ(cfg_read8(slot, p + 4), 0); /* BAR 0 */
		uint64_t at = bar0 + cfg_read32(slot, p + 8);
		if (type == 1)
			common = at;
		else if (type == 2) {
			notify = at;
			notify_mult = cfg_read32(slot, p + 16);
		} else if (type == 3)
			isr = at;
		else if (type == 4)
			devcfg = at;
		seen |= 1u << type;
	}
	GUEST_ASSERT_EQ(seen & 0x1e, 0x1e);
	GUEST_ASSERT(msix != 0);
	(void)isr;
	(void)devcfg;
	cfg_write16(slot, 0x04, 0x0006); /* memory decoding, bus master */

	GUEST_ASSERT_EQ(r16(common + NUMQ), 1);
	w32(common + DFSEL, 1);
	GUEST_ASSERT(r32(common + DF) & 1); /* VERSION_1 offered */

	/* Without VERSION_1, and with a bit never offered, FEATURES_OK does not stick. */
	GUEST_ASSERT_EQ(negotiate(0) & 8, 0);
	GUEST_ASSERT_EQ(negotiate(1 | 0x80000000u) & 8, 0);
	GUEST_ASSERT_EQ(negotiate(1) & 8, 8);

	/* MSI-X: entry 1 to this CPU's LAPIC, vector VEC_RNG; enable the function. */
	uint32_t table = cfg_read32(slot, msix + 4);
	GUEST_ASSERT_EQ(table & 7, 0);
	uint64_t entry1 = bar0 + (table & ~7u) + 16;
	w32(entry1 + 0, 0xfee00000u);
	w32(entry1 + 4, 0);
	w32(entry1 + 8, VEC_RNG);
	w32(entry1 + 12, 0); /* unmasked */
	cfg_write16(slot, msix + 2, 0x8000);

	/* One good request: 64 writable bytes. */
	queue_up(QSIZE, DESC);
	GUEST_ASSERT_EQ(r8(common + STATUS), 15);
	volatile struct desc *d = (volatile struct desc *)DESC;
	for (int i = 0; i < 64; i++)
		w8(BUF + (uint64_t)i, 0);
	d[0].addr = BUF;
	d[0].len = 64;
	d[0].flags = 2; /* WRITE */
	d[0].next = 0;
	w16(AVAIL + 4, 0);
	w16(AVAIL + 2, 1);
	kick();
	__asm__ volatile("sti");
	for (long i = 0; i < 20000000 && r16(USED + 2) != 1; i++)
		__asm__ volatile("pause");
	GUEST_ASSERT_EQ(r16(USED + 2), 1);
	GUEST_ASSERT_EQ(r32(USED + 4), 0);  /* id */
	GUEST_ASSERT_EQ(r32(USED + 8), 64); /* len */
	int nonzero = 0;
	for (int i = 0; i < 64; i++)
		nonzero += r8(BUF + (uint64_t)i) != 0;
	GUEST_ASSERT(nonzero > 32);
	for (long i = 0; i < 20000000 && !rng_irqs; i++)
		__asm__ volatile("pause");
	__asm__ volatile("cli");
	GUEST_ASSERT(rng_irqs >= 1); /* the MSI-X vector arrived */

	/* Hostile: a descriptor chained to itself. */
	d[1].addr = BUF;
	d[1].len = 16;
	d[1].flags = 1 | 2; /* NEXT | WRITE */
	d[1].next = 1;
	w16(AVAIL + 4 + 2, 1);
	w16(AVAIL + 2, 2);
	kick();
	GUEST_ASSERT(wait_needs_reset());
	GUEST_ASSERT_EQ(r16(USED + 2), 1); /* nothing returned for the loop */

	/* Reset, then a queue size that is not a power of two: refused at DRIVER_OK. */
	GUEST_ASSERT_EQ(negotiate(1) & 8, 8);
	queue_up(6, DESC);
	GUEST_ASSERT(r8(common + STATUS) & 64);

	/* A descriptor table in the MMIO hole, not RAM. */
	GUEST_ASSERT_EQ(negotiate(1) & 8, 8);
	queue_up(QSIZE, 0xd0000000ULL);
	GUEST_ASSERT(r8(common + STATUS) & 64);

	/* After a reset the device serves again. */
	GUEST_ASSERT_EQ(negotiate(1) & 8, 8);
	queue_up(QSIZE, DESC);
	GUEST_ASSERT_EQ(r8(common + STATUS), 15);
	d[0].addr = BUF;
	d[0].len = 32;
	d[0].flags = 2;
	w16(AVAIL + 4, 0);
	w16(AVAIL + 2, 1);
	kick();
	for (long i = 0; i < 20000000 && r16(USED + 2) != 1; i++)
		__asm__ volatile("pause");
	GUEST_ASSERT_EQ(r16(USED + 2), 1);
	GUEST_ASSERT_EQ(r32(USED + 8), 32);
	return 0;
}
