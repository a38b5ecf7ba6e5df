/* Guest-physical layout of a kite microVM on x86-64. One place, so loaders,
 * tables and tests agree. */
#ifndef KITE_LAYOUT_H
#define KITE_LAYOUT_H

#define KiB(x) ((uint64_t)(x) << 10)
#define MiB(x) ((uint64_t)(x) << 20)
#define GiB(x) ((uint64_t)(x) << 30)

/* Boot structures below 1 MiB. */
#define LAYOUT_GDT 0x500
#define LAYOUT_IDT 0x520
#define LAYOUT_PVH_INFO 0x6000       /* hvm_start_info + modlist + memmap */
#define LAYOUT_ZERO_PAGE 0x7000      /* struct boot_params */
#define LAYOUT_BOOT_STACK 0x8ff0
#define LAYOUT_PML4 0x9000
#define LAYOUT_PDPT 0xa000
#define LAYOUT_PD 0xb000             /* 4 pages: identity map of 4 GiB, 2 MiB pages */
#define LAYOUT_PD_PAGES 4
#define LAYOUT_CMDLINE 0x20000
#define LAYOUT_CMDLINE_MAX 0x10000   /* bytes including the NUL */
#define LAYOUT_EBDA 0x9fc00
#define LAYOUT_LOWMEM_END 0xa0000
#define LAYOUT_BIOS_START 0xe0000    /* ACPI tables live here; the guest scans it for the RSDP */
#define LAYOUT_BIOS_END 0x100000
#define LAYOUT_HIGH_START 0x100000   /* 1 MiB: kernels load at or above */

/* 32-bit MMIO hole: RAM stops at 3 GiB and resumes at 4 GiB. */
#define LAYOUT_MMIO_HOLE_START 0xc0000000ULL
#define LAYOUT_MMIO_HOLE_END 0x100000000ULL
#define LAYOUT_BOOT_TIMER 0xc0000000ULL /* Firecracker's boot-timer register */
#define LAYOUT_PCI_MMIO32 0xc0001000ULL /* 32-bit BARs for PCI devices */
#define LAYOUT_PCI_MMIO32_END 0xfec00000ULL
#define LAYOUT_PCI_BARS 0xc1000000ULL   /* where kite places BARs at start-up */
#define LAYOUT_IOAPIC 0xfec00000ULL
#define LAYOUT_LAPIC 0xfee00000ULL
#define LAYOUT_TSS 0xfffbd000ULL        /* KVM_SET_TSS_ADDR: 3 pages */
#define LAYOUT_IDENTITY_MAP 0xfffbc000ULL

/* Fixed I/O ports. */
#define PORT_COM1 0x3f8
#define PORT_I8042_DATA 0x60
#define PORT_I8042_CMD 0x64
#define PORT_PCI_CONFIG_ADDR 0xcf8
#define PORT_PCI_CONFIG_DATA 0xcfc
#define PORT_ACPI_SLEEP 0x3c0        /* FADT sleep control/status (hardware-reduced ACPI) */
#define PORT_TESTDEV 0xf4            /* test guests' ucall port, only with --test-device */

#define IRQ_COM1 4

#endif
