/* Kernel loaders (bzImage, ELF vmlinux / PVH) and boot-information builders
 * (Linux zero page, PVH start_info, e820). All guest writes go through gmem. */
#ifndef KITE_BOOT_H
#define KITE_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "util/log.h"
#include "vmm/mem.h"

enum boot_mode {
	BOOT_LINUX64, /* 64-bit entry, rsi = zero page (bzImage or ELF without PVH note) */
	BOOT_PVH,     /* 32-bit protected-mode entry, ebx = hvm_start_info */
};

/* An ELF kernel does not say how long a command line it takes; Linux on x86
 * copies COMMAND_LINE_SIZE (2048) bytes and silently drops the rest. */
#define ELF_CMDLINE_MAX 2048

#define SETUP_HDR_START 0x1f1
#define SETUP_HDR_MAX_END 0x290

struct boot_image {
	enum boot_mode mode;
	int is_bzimage;
	uint64_t entry;
	uint64_t load_start, load_end; /* guest range the kernel may use while booting */
	uint16_t version;              /* boot protocol (bzImage), 0 for ELF */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;         /* bytes including the NUL */
	uint8_t setup_hdr[SETUP_HDR_MAX_END - SETUP_HDR_START];
	size_t setup_hdr_len;
};

/* Detects the format and loads it. Errors are KITE_EXIT_IMAGE with a reason. */
int kernel_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
		struct kite_err *err);
int bzimage_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
		 struct kite_err *err);
int elf_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
	     struct kite_err *err);

/* Picks the initrd address: page aligned, as high as allowed, above the kernel. */
int initrd_place(const struct gmem *m, const struct boot_image *bi, uint64_t size,
		 uint64_t *gpa, struct kite_err *err);

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3
#define E820_MAX 128

/* The guest's memory map for gmem's layout. Returns the number of entries. */
int e820_build(const struct gmem *m, struct e820_entry *out, int max);

struct boot_args {
	const char *cmdline;
	uint64_t initrd_gpa, initrd_size;
	uint64_t rsdp_gpa;
};

/* Writes the command line, e820 and the zero page (BOOT_LINUX64) or the PVH
 * start_info (BOOT_PVH). Returns 0; -1 with err on a command line too long. */
int boot_info_setup(struct gmem *m, const struct boot_image *bi, const struct boot_args *a,
		    struct kite_err *err);

/* boot_params offsets (Documentation/arch/x86/zero-page.rst). */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_CODE32_START 0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define BP_SIZE 0x1000

#define HDRS_MAGIC 0x53726448u /* "HdrS" */
#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01

/* PVH (xen/include/public/arch-x86/hvm/start_info.h) */
#define PVH_MAGIC 0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#endif
