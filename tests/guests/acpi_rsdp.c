/* The ACPI RSDP a guest finds by scanning the BIOS area from 0xE0000, and the
 * tables it leads to: checksums, XSDT, FADT with the reset register, MADT. */
#include "guest.h"

static uint8_t sum(const volatile uint8_t *p, uint32_t len)
{
	uint8_t s = 0;
	for (uint32_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static uint32_t rd32(const volatile uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const volatile uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* The table's length, after checking its signature and checksum. */
static uint32_t check_table(uint64_t gpa, const char *sig)
{
	const volatile uint8_t *t = (const volatile uint8_t *)gpa;
	GUEST_ASSERT(gpa >= 0xe0000 && gpa < 0x100000);
	GUEST_ASSERT(mem_eq((const void *)t, sig, 4));
	uint32_t len = rd32(t + 4);
	GUEST_ASSERT(len >= 36 && gpa + len <= 0x100000);
	GUEST_ASSERT_EQ(sum(t, len), 0);
	return len;
}

int main(void)
{
	const volatile uint8_t *rsdp = (const volatile uint8_t *)0xe0000;
	GUEST_ASSERT(mem_eq((const void *)rsdp, "RSD PTR ", 8));
	GUEST_ASSERT_EQ(sum(rsdp, 20), 0);  /* ACPI 1.0 checksum */
	GUEST_ASSERT_EQ(rsdp[15], 2);       /* revision: XSDT present */
	GUEST_ASSERT_EQ(rd32(rsdp + 20), 36);
	GUEST_ASSERT_EQ(sum(rsdp, 36), 0);  /* extended checksum */

	uint64_t xsdt = rd64(rsdp + 24);
	uint32_t xlen = check_table(xsdt, "XSDT");
	int fadt_seen = 0, madt_seen = 0;
	for (uint32_t off = 36; off + 8 <= xlen; off += 8) {
		uint64_t t = rd64((const volatile uint8_t *)xsdt + off);
		const volatile uint8_t *p = (const volatile uint8_t *)t;
		if (mem_eq((const void *)p, "FACP", 4)) {
			check_table(t, "FACP");
			/* RESET_REG: one byte of I/O space at 0x3c1, value 0x0f. */
			GUEST_ASSERT_EQ(p[116], 1);
			GUEST_ASSERT_EQ(rd64(p + 120), 0x3c1);
			GUEST_ASSERT_EQ(p[128], 0x0f);
			check_table(rd64(p + 140), "DSDT");
			fadt_seen = 1;
		} else if (mem_eq((const void *)p, "APIC", 4)) {
			check_table(t, "APIC");
			GUEST_ASSERT_EQ(rd32(p + 36), 0xfee00000u);
			madt_seen = 1;
		}
	}
	GUEST_ASSERT(fadt_seen);
	GUEST_ASSERT(madt_seen);

	/* The Linux boot protocol hands over the same address. */
	GUEST_ASSERT_EQ(rd64((const volatile uint8_t *)(boot_params_gpa + 0x70)), 0xe0000);
	return 0;
}
