#include "arch/x86/acpi.h"

#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "devices/i8042.h"

#define HDR_LEN 36

uint8_t acpi_checksum(const uint8_t *p, uint64_t len)
{
	uint8_t s = 0;
	for (uint64_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static void header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "KITEVM", 6);
	memcpy(t + 16, "KITEMVM ", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "KITE", 4);
	put32(t + 32, 1);
}

static void seal(uint8_t *t, uint32_t len, int csum_off)
{
	t[csum_off] = 0;
	t[csum_off] = (uint8_t)(0 - acpi_checksum(t, len));
}

/* Generic Address Structure for one byte of system I/O space. */
static void gas_io8(uint8_t *g, uint16_t port)
{
	g[0] = 1; /* system I/O */
	g[1] = 8; /* bit width */
	g[2] = 0;
	g[3] = 1; /* byte access */
	put64(g + 4, port);
}

/* The DSDT: \_S5 (soft-off), COM1 as a PNP0501 device and the i8042 keyboard
 * as a PNP0303 one. Hardware-reduced Linux has no legacy PIC, so it only wires
 * an ISA IRQ (4, 1) to the IOAPIC for a device the firmware describes; the static
 * 8250 port alone cannot take its interrupt. The keyboard's PNP device also tells
 * Linux's i8042 driver where the controller is, and that it has no aux port
 * (no PNP0F13 mouse), so it skips the mouse probes. */
static int build_dsdt(uint8_t *t, uint32_t room, uint32_t *out_len)
{
	static struct aml dsdt, sb, com1, ps2k, pci;
	memset(&pci, 0, sizeof(pci));
	memset(&dsdt, 0, sizeof(dsdt));
	memset(&sb, 0, sizeof(sb));
	memset(&com1, 0, sizeof(com1));
	memset(&ps2k, 0, sizeof(ps2k));

	const uint8_t s5[2] = {ACPI_SLP_TYP_S5, ACPI_SLP_TYP_S5};
	aml_name_pkg_bytes(&dsdt, "_S5_", s5, 2);

	/* IO (Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags () {4}, end tag */
	const uint8_t crs[] = {0x47, 0x01, PORT_COM1 & 0xff, PORT_COM1 >> 8, PORT_COM1 & 0xff,
			       PORT_COM1 >> 8, 0x01, 0x08, 0x22, 1 << IRQ_COM1, 0x00, 0x79, 0x00};
	aml_name_eisaid(&com1, "_HID", "PNP0501");
	aml_name_int(&com1, "_UID", 1);
	aml_name_buffer(&com1, "_CRS", crs, sizeof(crs));
	aml_device(&sb, "COM1", &com1);

	/* IO (Decode16, 0x60, 0x60, 1, 1), IO (Decode16, 0x64, 0x64, 1, 1),
	 * IRQNoFlags () {1}, end tag. Linux takes the data port from the first
	 * range and the command port from the second, each one byte long. */
	const uint8_t kbd_crs[] = {0x47, 0x01, PORT_I8042_DATA, 0x00, PORT_I8042_DATA, 0x00, 0x01, 0x01,
				   0x47, 0x01, PORT_I8042_CMD, 0x00, PORT_I8042_CMD, 0x00, 0x01, 0x01,
				   0x22, 1 << I8042_IRQ, 0x00, 0x79, 0x00};
	aml_name_eisaid(&ps2k, "_HID", "PNP0303");
	aml_name_buffer(&ps2k, "_CRS", kbd_crs, sizeof(kbd_crs));
	aml_device(&sb, "PS2K", &ps2k);

	/* PCI bus 0 behind configuration mechanism #1: with ACPI, Linux finds PCI
	 * only through a PNP0A03 root bridge, and its _CRS gives the windows BARs
	 * may live in. Interrupts are MSI-X, so no _PRT. */
	uint8_t pci_crs[16 + 8 + 16 + 16 + 26 + 2];
	uint8_t *c = pci_crs;
	/* WordBusNumber: bus 0 only. Flags: min and max fixed. */
	const uint8_t bus[16] = {0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
	memcpy(c, bus, 16);
	c += 16;
	/* IO (Decode16, 0xCF8, 0xCF8, 1, 8): the configuration ports themselves. */
	const uint8_t cfgio[8] = {0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08};
	memcpy(c, cfgio, 8);
	c += 8;
	/* WordIO windows 0x0000-0x0CF7 and 0x0D00-0xFFFF. */
	const uint16_t io[2][2] = {{0x0000, 0x0cf7}, {0x0d00, 0xffff}};
	for (int i = 0; i < 2; i++) {
		const uint8_t w[6] = {0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03};
		memcpy(c, w, 6);
		put16(c + 6, 0);
		put16(c + 8, io[i][0]);
		put16(c + 10, io[i][1]);
		put16(c + 12, 0);
		put16(c + 14, (uint16_t)(io[i][1] - io[i][0] + 1));
		c += 16;
	}
	/* DWordMemory: the 32-bit BAR window, read-write, not cacheable. */
	const uint8_t m[6] = {0x87, 0x17, 0x00, 0x00, 0x0c, 0x01};
	memcpy(c, m, 6);
	put32(c + 6, 0);
	put32(c + 10, (uint32_t)LAYOUT_PCI_MMIO32);
	put32(c + 14, (uint32_t)(LAYOUT_PCI_MMIO32_END - 1));
	put32(c + 18, 0);
	put32(c + 22, (uint32_t)(LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32));
	c += 26;
	c[0] = 0x79;
	c[1] = 0x00;
	aml_name_eisaid(&pci, "_HID", "PNP0A03");
	aml_name_int(&pci, "_UID", 0);
	aml_name_int(&pci, "_SEG", 0);
	aml_name_int(&pci, "_BBN", 0);
	aml_name_buffer(&pci, "_CRS", pci_crs, sizeof(pci_crs));
	aml_device(&sb, "PCI0", &pci);
	aml_scope(&dsdt, "_SB_", &sb);

	uint32_t len = HDR_LEN + (uint32_t)dsdt.len;
	if (dsdt.err || len > room)
		return -1;
	header(t, "DSDT", len, 2);
	memcpy(t + HDR_LEN, dsdt.b, dsdt.len);
	seal(t, len, 9);
	*out_len = len;
	return 0;
}

static uint32_t build_fadt(uint8_t *t, uint64_t dsdt)
{
	const uint32_t len = 276;
	memset(t, 0, len);
	header(t, "FACP", len, 6);
	put32(t + 40, (uint32_t)dsdt);
	put16(t + 46, 9);                   /* SCI_INT (unused when hardware-reduced) */
	/* IAPC_BOOT_ARCH: an 8042 (the keyboard Ctrl+Alt+Del is typed on), no VGA,
	 * no CMOS RTC (the guest reads wall time from kvmclock; probing the RTC
	 * costs seconds of boot). */
	put16(t + 109, (1 << 1) | (1 << 2) | (1 << 5));
	put32(t + 112, (1u << 20) | (1u << 10)); /* HW_REDUCED_ACPI, RESET_REG_SUP */
	gas_io8(t + 116, PORT_ACPI_SLEEP + 1);  /* RESET_REG */
	t[128] = ACPI_RESET_VALUE;
	t[131] = 0;                         /* FADT minor version */
	put64(t + 140, dsdt);               /* X_DSDT */
	gas_io8(t + 244, PORT_ACPI_SLEEP);  /* SLEEP_CONTROL_REG */
	gas_io8(t + 256, PORT_ACPI_SLEEP);  /* SLEEP_STATUS_REG */
	put64(t + 268, 0x4b564d4b564d4b56ULL); /* hypervisor vendor: "VKMVKMVK" */
	seal(t, len, 9);
	return len;
}

/* ISA IRQs given an interrupt source override. A hardware-reduced guest has no
 * legacy PIC, so Linux maps ISA IRQs to IOAPIC pins only where the MADT says so;
 * without these the serial port's IRQ 4 has no handler chip and a console open
 * fails. Identity, edge-triggered, active high. */
#define MADT_ISA_IRQS 15 /* 0..15 except 2 (the cascade) */
#define MADT_LEN(ncpus) (HDR_LEN + 8 + 8 * (ncpus) + 12 + 10 * MADT_ISA_IRQS)

static uint32_t build_madt(uint8_t *t, unsigned ncpus)
{
	uint32_t len = MADT_LEN(ncpus);
	memset(t, 0, len);
	header(t, "APIC", len, 4);
	put32(t + 36, (uint32_t)LAYOUT_LAPIC);
	put32(t + 40, 0); /* no PCAT_COMPAT: the guest routes everything through the IOAPIC */
	uint8_t *e = t + 44;
	for (unsigned i = 0; i < ncpus; i++, e += 8) {
		e[0] = 0;           /* processor local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i;  /* ACPI processor UID */
		e[3] = (uint8_t)i;  /* APIC id */
		put32(e + 4, 1);    /* enabled */
	}
	e[0] = 1; /* IOAPIC */
	e[1] = 12;
	e[2] = (uint8_t)ncpus; /* IOAPIC id after the CPUs' */
	put32(e + 4, (uint32_t)LAYOUT_IOAPIC);
	put32(e + 8, 0);       /* GSI base */
	e += 12;
	for (uint8_t irq = 0; irq < 16; irq++) {
		if (irq == 2)
			continue;
		e[0] = 2;     /* interrupt source override */
		e[1] = 10;
		e[2] = 0;     /* ISA bus */
		e[3] = irq;   /* source */
		put32(e + 4, irq); /* GSI */
		put16(e + 8, 0x5); /* active high, edge */
		e += 10;
	}
	seal(t, len, 9);
	return len;
}

int acpi_build(struct gmem *m, unsigned ncpus, uint64_t *rsdp_gpa)
{
	const uint64_t base = LAYOUT_BIOS_START;
	const uint64_t size = LAYOUT_BIOS_END - LAYOUT_BIOS_START;
	uint8_t *area = gmem_ptr(m, base, size);
	if (!area || ncpus == 0 || ncpus > 254)
		return -1;
	memset(area, 0, size);
	uint64_t rsdp = base, xsdt = base + 0x40, fadt = base + 0x80;
	uint64_t dsdt = fadt + 0x200, madt = dsdt + 0x400;
	if ((madt - base) + MADT_LEN(ncpus) > size)
		return -1;

	uint32_t dlen;
	if (build_dsdt(area + (dsdt - base), (uint32_t)(madt - dsdt), &dlen) < 0)
		return -1;
	build_fadt(area + (fadt - base), dsdt);
	build_madt(area + (madt - base), ncpus);

	uint8_t *x = area + (xsdt - base);
	uint32_t xlen = HDR_LEN + 2 * 8;
	header(x, "XSDT", xlen, 1);
	put64(x + HDR_LEN, fadt);
	put64(x + HDR_LEN + 8, madt);
	seal(x, xlen, 9);

	uint8_t *r = area + (rsdp - base);
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, "KITEVM", 6);
	r[15] = 2;              /* ACPI 2.0+ */
	put32(r + 16, 0);       /* no RSDT: XSDT only */
	put32(r + 20, 36);
	put64(r + 24, xsdt);
	r[8] = (uint8_t)(0 - acpi_checksum(r, 20));
	r[32] = (uint8_t)(0 - acpi_checksum(r, 36));
	*rsdp_gpa = rsdp;
	return 0;
}
