/* ACPI tables: RSDP, XSDT, FADT (hardware-reduced), DSDT (\_S5 for poweroff), MADT
 * (one local APIC per vCPU, the IOAPIC). Debian's kernels have no MP-table parser,
 * so SMP and the IOAPIC are found only through ACPI. */
#ifndef KITE_ACPI_H
#define KITE_ACPI_H

#include <stdint.h>

#include "vmm/mem.h"

#define ACPI_SLP_TYP_S5 5
#define ACPI_SLP_EN 0x20
#define ACPI_RESET_VALUE 0x0f

/* Writes the tables into the BIOS area; returns 0 and the RSDP address. */
int acpi_build(struct gmem *m, unsigned ncpus, uint64_t *rsdp_gpa);
/* Sum of bytes, for tests: every table must sum to 0. */
uint8_t acpi_checksum(const uint8_t *p, uint64_t len);

#endif
