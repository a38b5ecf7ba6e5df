/* ACPI tables as a guest's firmware parser sees them: RSDP -> XSDT -> FADT ->
 * DSDT and MADT, every checksum, every length, and the AML's package lengths. */
#include "unit.h"

#include <stdlib.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "devices/i8042.h"
#include "vmm/mem.h"

#define RAM MiB(2)
#define HDR 36
#define FADT_HW_REDUCED (1u << 20)
/* IAPC_BOOT_ARCH flags (FADT offset 109). */
#define BOOT_ARCH_8042 (1u << 1)
#define BOOT_ARCH_NO_VGA (1u << 2)
#define BOOT_ARCH_NO_CMOS_RTC (1u << 5)

struct ctx {
	struct gmem m;
	uint8_t *ram;
};

static int ctx_setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	/* Stale bytes: the builders must clear what they do not set. */
	if (test_ram_init(&c->m, &c->ram, RAM, 0xa5, RAM) < 0) {
		free(c);
		return -1;
	}
	*state = c;
	return 0;
}

static int ctx_teardown(void **state)
{
	struct ctx *c = *state;
	test_ram_free(&c->m, c->ram);
	free(c);
	return 0;
}

/* A table at gpa with a sane header: inside the BIOS area, checksum 0. */
static const uint8_t *table_at(const struct ctx *c, uint64_t gpa, const char sig[4])
{
	assert_true(gpa >= LAYOUT_BIOS_START && gpa + HDR <= LAYOUT_BIOS_END);
	const uint8_t *t = c->ram + gpa;
	assert_memory_equal(t, sig, 4);
	uint32_t len = le32(t + 4);
	assert_true(len >= HDR);
	assert_true(gpa + len <= LAYOUT_BIOS_END);
	assert_int_equal(acpi_checksum(t, len), 0);
	assert_memory_equal(t + 10, "KITEVM", 6);
	return t;
}

static const uint8_t *rsdp_of(const struct ctx *c, uint64_t rsdp)
{
	/* Linux without an RSDP pointer scans the BIOS area on 16-byte boundaries. */
	assert_int_equal(rsdp % 16, 0);
	assert_true(rsdp >= LAYOUT_BIOS_START && rsdp + 36 <= LAYOUT_BIOS_END);
	return c->ram + rsdp;
}

/* The XSDT entry with this signature (exactly one). */
static const uint8_t *xsdt_find(const struct ctx *c, uint64_t rsdp, const char sig[4])
{
	const uint8_t *x = table_at(c, le64(rsdp_of(c, rsdp) + 24), "XSDT");
	uint32_t n = (le32(x + 4) - HDR) / 8;
	const uint8_t *found = NULL;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = le64(x + HDR + 8 * i);
		assert_true(gpa >= LAYOUT_BIOS_START && gpa < LAYOUT_BIOS_END);
		if (memcmp(c->ram + gpa, sig, 4) == 0) {
			assert_null(found);
			found = table_at(c, gpa, sig);
		}
	}
	assert_non_null(found);
	return found;
}

static uint64_t build(struct ctx *c, unsigned ncpus)
{
	uint64_t rsdp = 0;
	assert_int_equal(acpi_build(&c->m, ncpus, &rsdp), 0);
	return rsdp;
}

static void checksum_helper(void **state)
{
	(void)state;
	const uint8_t b[] = {1, 2, 3, 250};
	assert_int_equal(acpi_checksum(b, 0), 0);
	assert_int_equal(acpi_checksum(b, 3), 6);
	assert_int_equal(acpi_checksum(b, 4), 0);
}

static void rsdp(void **state)
{
	struct ctx *c = *state;
	uint64_t gpa = build(c, 1);
	const uint8_t *r = rsdp_of(c, gpa);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(acpi_checksum(r, 20), 0);
	assert_int_equal(r[15], 2);          /* revision: ACPI 2.0+, XSDT valid */
	assert_int_equal(le32(r + 20), 36);  /* length */
	assert_int_equal(acpi_checksum(r, 36), 0);
	assert_int_equal(le32(r + 16), 0);   /* no RSDT */
	assert_memory_equal(r + 9, "KITEVM", 6);
	for (int i = 33; i < 36; i++)
		assert_int_equal(r[i], 0);   /* reserved */
}

static void xsdt_lists_fadt_and_madt(void **state)
{
	struct ctx *c = *state;
	uint64_t gpa = build(c, 2);
	const uint8_t *x = table_at(c, le64(rsdp_of(c, gpa) + 24), "XSDT");
	assert_int_equal((le32(x + 4) - HDR) % 8, 0);
	const uint8_t *f = xsdt_find(c, gpa, "FACP");
	const uint8_t *m = xsdt_find(c, gpa, "APIC");
	assert_ptr_not_equal(f, m);
}

static void tables_do_not_overlap(void **state)
{
	struct ctx *c = *state;
	uint64_t gpa = build(c, 254);
	const uint8_t *t[5];
	t[0] = rsdp_of(c, gpa);
	t[1] = table_at(c, le64(t[0] + 24), "XSDT");
	t[2] = xsdt_find(c, gpa, "FACP");
	t[3] = xsdt_find(c, gpa, "APIC");
	t[4] = table_at(c, le64(t[2] + 140), "DSDT");
	uint32_t len[5] = {36, le32(t[1] + 4), le32(t[2] + 4), le32(t[3] + 4), le32(t[4] + 4)};
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 5; j++)
			if (i != j)
				assert_true(t[i] + len[i] <= t[j] || t[j] + len[j] <= t[i]);
}

struct madt_seen {
	unsigned lapics, ioapics, isos;
	uint8_t apic_ids[256];
	uint8_t ioapic_id;
	uint32_t ioapic_addr, ioapic_gsi;
	uint16_t iso_seen; /* bitmap of ISA IRQs with an override */
};

static void madt_walk(const uint8_t *t, struct madt_seen *s)
{
	memset(s, 0, sizeof(*s));
	uint32_t len = le32(t + 4);
	assert_int_equal(le32(t + 36), LAYOUT_LAPIC);
	uint32_t off = 44;
	uint8_t uid_seen[256] = {0};
	while (off < len) {
		assert_true(len - off >= 2);
		uint8_t type = t[off], elen = t[off + 1];
		assert_true(elen >= 2 && elen <= len - off);
		const uint8_t *e = t + off;
		switch (type) {
		case 0: /* processor local APIC */
			assert_int_equal(elen, 8);
			assert_true(le32(e + 4) & 1); /* enabled */
			assert_int_equal(uid_seen[e[2]], 0);
			uid_seen[e[2]] = 1;
			s->apic_ids[s->lapics++] = e[3];
			break;
		case 1: /* IOAPIC */
			assert_int_equal(elen, 12);
			s->ioapics++;
			s->ioapic_id = e[2];
			s->ioapic_addr = le32(e + 4);
			s->ioapic_gsi = le32(e + 8);
			break;
		case 2: /* interrupt source override */
			assert_int_equal(elen, 10);
			assert_int_equal(e[2], 0); /* ISA */
			assert_true(e[3] < 16);
			assert_int_equal(s->iso_seen & (1u << e[3]), 0);
			s->iso_seen |= (uint16_t)(1u << e[3]);
			assert_true(le32(e + 4) < 24); /* a pin of the one IOAPIC */
			s->isos++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", type);
		}
		off += elen;
	}
	assert_int_equal(off, len);
}

static void madt_cpus(void **state)
{
	struct ctx *c = *state;
	static const unsigned counts[] = {1, 2, 3, 8, 64, 253, 254};
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		unsigned n = counts[k];
		uint64_t gpa = build(c, n);
		struct madt_seen s;
		madt_walk(xsdt_find(c, gpa, "APIC"), &s);
		assert_int_equal(s.lapics, n);
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(s.apic_ids[i], i);
		assert_int_equal(s.ioapics, 1);
		assert_int_equal(s.ioapic_addr, LAYOUT_IOAPIC);
		assert_int_equal(s.ioapic_addr, 0xfec00000u);
		assert_int_equal(s.ioapic_gsi, 0);
		/* The IOAPIC's id must not collide with a local APIC's. */
		for (unsigned i = 0; i < n; i++)
			assert_int_not_equal(s.ioapic_id, s.apic_ids[i]);
		/* COM1's and the keyboard's IRQs reach the IOAPIC. */
		if (s.isos) {
			assert_true(s.iso_seen & (1u << IRQ_COM1));
			assert_true(s.iso_seen & (1u << I8042_IRQ));
		}
	}
}

static void madt_rebuild_shrinks(void **state)
{
	struct ctx *c = *state;
	build(c, 200);
	uint64_t gpa = build(c, 2);
	struct madt_seen s;
	madt_walk(xsdt_find(c, gpa, "APIC"), &s);
	assert_int_equal(s.lapics, 2);
}

/* ---- DSDT: a small AML reader for what kite emits ---- */

struct aml_found {
	int s5, s5_typ[2];
	int com1_hid, com1_crs_io, com1_crs_irq;
	int ps2k_hid, ps2k_crs_data, ps2k_crs_cmd, ps2k_crs_irq, ps2k_crs_io_count;
	int pci_hid, pci_bus0, pci_mem_window, pci_io_windows;
};

static uint32_t pkg_len(const uint8_t **p, const uint8_t *end)
{
	assert_true(*p < end);
	uint8_t lead = *(*p)++;
	unsigned follow = lead >> 6;
	if (follow == 0)
		return lead & 0x3f;
	assert_int_equal(lead & 0x30, 0); /* bits 5:4 reserved with follow bytes */
	assert_true((size_t)(end - *p) >= follow);
	uint32_t len = lead & 0x0f;
	for (unsigned i = 0; i < follow; i++)
		len |= (uint32_t)*(*p)++ << (4 + 8 * i);
	return len;
}

/* Start of an object with a PkgLength at p: returns where the object ends. */
static const uint8_t *pkg_end(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *start = *p;
	uint32_t len = pkg_len(p, end);
	assert_true(len >= (uint32_t)(*p - start));
	assert_true(len <= (size_t)(end - start));
	return start + len;
}

static uint64_t aml_integer(const uint8_t **p, const uint8_t *end)
{
	assert_true(*p < end);
	uint8_t op = *(*p)++;
	unsigned n;
	switch (op) {
	case 0x00: return 0;
	case 0x01: return 1;
	case 0xff: return UINT64_MAX;
	case 0x0a: n = 1; break;
	case 0x0b: n = 2; break;
	case 0x0c: n = 4; break;
	case 0x0e: n = 8; break;
	default: fail_msg("not an AML integer: 0x%02x", op); return 0;
	}
	assert_true((size_t)(end - *p) >= n);
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)(*p)[i] << (8 * i);
	*p += n;
	return v;
}

static void check_crs(const uint8_t *b, const uint8_t *end, const char *scope,
		      struct aml_found *f)
{
	int com1 = strcmp(scope, "COM1") == 0, ps2k = strcmp(scope, "PS2K") == 0;
	int pci = strcmp(scope, "PCI0") == 0;
	while (b < end) {
		uint8_t tag = *b;
		if (tag & 0x80) { /* large resource: le16 length */
			assert_true(pci); /* only the PCI root bridge uses them */
			assert_true(end - b >= 3);
			unsigned llen = le16(b + 1);
			assert_true((size_t)(end - b) >= 3 + llen);
			if (tag == 0x88 && b[3] == 2) /* WordBusNumber 0..0 */
				f->pci_bus0 = le16(b + 8) == 0 && le16(b + 10) == 0 && le16(b + 14) == 1;
			if (tag == 0x88 && b[3] == 1) /* WordIO window */
				f->pci_io_windows++;
			/* DWordMemory: the BAR window, as kite's layout places BARs. */
			if (tag == 0x87 && b[3] == 0 && le32(b + 10) == LAYOUT_PCI_MMIO32 &&
			    le32(b + 14) == LAYOUT_PCI_MMIO32_END - 1 &&
			    le32(b + 22) == LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32 && LAYOUT_PCI_BARS >= LAYOUT_PCI_MMIO32)
				f->pci_mem_window = 1;
			b += 3 + llen;
			continue;
		}
		unsigned len = tag & 7;
		assert_true((size_t)(end - b) >= 1 + len);
		switch (tag >> 3) {
		case 0x08: /* IO */
			assert_int_equal(len, 7);
			if (com1 && le16(b + 2) == PORT_COM1 && le16(b + 4) == PORT_COM1 && b[7] == 8)
				f->com1_crs_io = 1;
			if (ps2k) {
				/* Linux's i8042 PNP probe: range 0 is the data port,
				 * range 1 the command port, each exactly one byte. */
				uint16_t want = f->ps2k_crs_io_count == 0 ? PORT_I8042_DATA : PORT_I8042_CMD;
				assert_int_equal(le16(b + 2), want);
				assert_int_equal(le16(b + 4), want);
				assert_int_equal(b[7], 1);
				if (f->ps2k_crs_io_count++ == 0)
					f->ps2k_crs_data = 1;
				else
					f->ps2k_crs_cmd = 1;
			}
			break;
		case 0x04: /* IRQ */
			if (com1 && le16(b + 1) == 1u << IRQ_COM1)
				f->com1_crs_irq = 1;
			if (ps2k) {
				assert_int_equal(le16(b + 1), 1u << I8042_IRQ);
				f->ps2k_crs_irq = 1;
			}
			break;
		case 0x0f: /* end tag */
			assert_int_equal(b + 1 + len, end);
			return;
		}
		b += 1 + len;
	}
	fail_msg("resource template without an end tag");
}

static void data_object(const uint8_t **p, const uint8_t *end, const char *name,
			const char *scope, struct aml_found *f)
{
	assert_true(*p < end);
	if (**p == 0x12) { /* Package */
		(*p)++;
		const uint8_t *pe = pkg_end(p, end);
		assert_true(*p < pe);
		uint8_t count = *(*p)++;
		for (uint8_t i = 0; i < count; i++) {
			uint64_t v = aml_integer(p, pe);
			if (strcmp(name, "_S5_") == 0 && i < 2)
				f->s5_typ[i] = (int)v;
		}
		assert_ptr_equal(*p, pe);
		if (strcmp(name, "_S5_") == 0 && scope[0] == '\0')
			f->s5 = count;
	} else if (**p == 0x11) { /* Buffer */
		(*p)++;
		const uint8_t *be = pkg_end(p, end);
		uint64_t size = aml_integer(p, be);
		assert_int_equal(size, (uint64_t)(be - *p));
		if (strcmp(name, "_CRS") == 0)
			check_crs(*p, be, scope, f);
		*p = be;
	} else {
		const uint8_t *at = *p;
		uint64_t v = aml_integer(p, end);
		if (strcmp(name, "_HID") == 0 && strcmp(scope, "COM1") == 0 && *at == 0x0c) {
			/* EISAID ("PNP0501"), as stored: 41 D0 05 01. */
			const uint8_t want[4] = {0x41, 0xd0, 0x05, 0x01};
			assert_memory_equal(at + 1, want, 4);
			f->com1_hid = 1;
		}
		if (strcmp(name, "_HID") == 0 && strcmp(scope, "PS2K") == 0 && *at == 0x0c) {
			/* EISAID ("PNP0303"): the keyboard Linux's i8042 driver looks for. */
			const uint8_t want[4] = {0x41, 0xd0, 0x03, 0x03};
			assert_memory_equal(at + 1, want, 4);
			f->ps2k_hid = 1;
		}
		if (strcmp(name, "_HID") == 0 && strcmp(scope, "PCI0") == 0 && *at == 0x0c) {
			/* EISAID ("PNP0A03"): with ACPI, Linux scans PCI only below one. */
			const uint8_t want[4] = {0x41, 0xd0, 0x0a, 0x03};
			assert_memory_equal(at + 1, want, 4);
			f->pci_hid = 1;
		}
		(void)v;
	}
}

static void term_list(const uint8_t *p, const uint8_t *end, const char *scope,
		      struct aml_found *f, int depth)
{
	assert_true(depth < 8);
	while (p < end) {
		uint8_t op = *p++;
		char name[5] = {0};
		if (op == 0x08) { /* Name */
			assert_true(end - p >= 4);
			memcpy(name, p, 4);
			p += 4;
			data_object(&p, end, name, scope, f);
		} else if (op == 0x10) { /* Scope */
			const uint8_t *se = pkg_end(&p, end);
			if (p < se && *p == '\\')
				p++;
			assert_true(se - p >= 4);
			memcpy(name, p, 4);
			term_list(p + 4, se, name, f, depth + 1);
			p = se;
		} else if (op == 0x5b && p < end && *p == 0x82) { /* Device */
			p++;
			const uint8_t *de = pkg_end(&p, end);
			assert_true(de - p >= 4);
			memcpy(name, p, 4);
			term_list(p + 4, de, name, f, depth + 1);
			p = de;
		} else {
			fail_msg("unexpected AML opcode 0x%02x", op);
		}
	}
	assert_ptr_equal(p, end);
}

static void fadt_and_dsdt(void **state)
{
	struct ctx *c = *state;
	uint64_t gpa = build(c, 4);
	const uint8_t *f = xsdt_find(c, gpa, "FACP");
	assert_int_equal(le32(f + 4), 276);
	assert_int_equal(f[8], 6); /* FADT revision 6 */
	assert_true(le32(f + 112) & FADT_HW_REDUCED);
	/* An 8042 is there (so Linux looks for it through PNP), VGA and the CMOS
	 * RTC are not (probing the RTC costs seconds of boot). */
	assert_int_equal(le16(f + 109), BOOT_ARCH_8042 | BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS_RTC);
	uint64_t dsdt = le64(f + 140); /* X_DSDT */
	assert_int_equal(le32(f + 40), (uint32_t)dsdt);
	/* Sleep control and status registers: one byte of I/O space at the PM port. */
	for (int off = 244; off <= 256; off += 12) {
		assert_int_equal(f[off], 1);
		assert_int_equal(f[off + 1], 8);
		assert_int_equal(le64(f + off + 4), PORT_ACPI_SLEEP);
	}
	/* Reset register, when claimed supported, is a byte port with a value. */
	if (le32(f + 112) & (1u << 10)) {
		assert_int_equal(f[116], 1);
		assert_int_equal(le64(f + 120), PORT_ACPI_SLEEP + 1);
		assert_int_equal(f[128], ACPI_RESET_VALUE);
	}

	const uint8_t *d = table_at(c, dsdt, "DSDT");
	uint32_t dlen = le32(d + 4);
	assert_non_null(memmem(d + HDR, dlen - HDR, "_S5_", 4));

	struct aml_found found;
	memset(&found, 0, sizeof(found));
	term_list(d + HDR, d + dlen, "", &found, 0);
	assert_true(found.s5 >= 1);
	assert_int_equal(found.s5_typ[0], ACPI_SLP_TYP_S5);
	if (memmem(d + HDR, dlen - HDR, "COM1", 4)) {
		assert_true(found.com1_hid);
		assert_true(found.com1_crs_io);
		assert_true(found.com1_crs_irq);
	}
	/* The keyboard: without it Linux would wire no IRQ 1 (no legacy PIC). */
	assert_true(found.ps2k_hid);
	assert_true(found.ps2k_crs_data);
	assert_true(found.ps2k_crs_cmd);
	assert_int_equal(found.ps2k_crs_io_count, 2);
	assert_true(found.ps2k_crs_irq);
	/* The PCI root bridge and its windows: bus 0, I/O, the 32-bit BAR window. */
	assert_true(found.pci_hid);
	assert_true(found.pci_bus0);
	assert_int_equal(found.pci_io_windows, 2);
	assert_true(found.pci_mem_window);
}

static void bad_cpu_counts_rejected(void **state)
{
	struct ctx *c = *state;
	static const unsigned bad[] = {0, 255, 256, 1000, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t rsdp = 0x1234;
		assert_int_equal(acpi_build(&c->m, bad[i], &rsdp), -1);
		assert_int_equal(rsdp, 0x1234);
	}
	/* Nothing was written for a refused build. */
	assert_int_equal(c->ram[LAYOUT_BIOS_START], 0xa5);
}

static void memory_too_small(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {LAYOUT_BIOS_START, LAYOUT_BIOS_END - 1};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *buf = calloc(1, sizes[i]);
		assert_non_null(buf);
		struct gmem m;
		assert_int_equal(gmem_init(&m, sizes[i], buf), 0);
		uint64_t rsdp = 0;
		assert_int_equal(acpi_build(&m, 1, &rsdp), -1);
		gmem_free(&m);
		free(buf);
	}
	/* Exactly 1 MiB holds the whole BIOS area. */
	uint8_t *buf = calloc(1, LAYOUT_BIOS_END);
	assert_non_null(buf);
	struct gmem m;
	assert_int_equal(gmem_init(&m, LAYOUT_BIOS_END, buf), 0);
	uint64_t rsdp = 0;
	assert_int_equal(acpi_build(&m, 254, &rsdp), 0);
	gmem_free(&m);
	free(buf);
}

#define T(f) cmocka_unit_test_setup_teardown(f, ctx_setup, ctx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(checksum_helper),
		T(rsdp),
		T(xsdt_lists_fadt_and_madt),
		T(tables_do_not_overlap),
		T(madt_cpus),
		T(madt_rebuild_shrinks),
		T(fadt_and_dsdt),
		T(bad_cpu_counts_rejected),
		cmocka_unit_test(memory_too_small),
	};
	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
