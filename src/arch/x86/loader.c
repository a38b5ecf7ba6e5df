/* bzImage and ELF loaders. The image is untrusted input: every field is checked
 * against the file length and the guest's memory before anything is copied. */
#include <elf.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int is_bzimage(const uint8_t *img, size_t len)
{
	return len >= BP_HEADER + 4 && rd16(img + BP_BOOT_FLAG) == 0xaa55 &&
	       rd32(img + BP_HEADER) == HDRS_MAGIC;
}

static int is_elf(const uint8_t *img, size_t len)
{
	return len >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0;
}

int kernel_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
		struct kite_err *err)
{
	if (is_elf(img, len))
		return elf_load(m, img, len, bi, err);
	if (is_bzimage(img, len))
		return bzimage_load(m, img, len, bi, err);
	return err_set(err, KITE_EXIT_IMAGE, "not a bzImage or ELF kernel (no HdrS/0xAA55 signature, no ELF magic)");
}

/* [start, start+size) must be RAM at or above 1 MiB. */
static int fits_high(const struct gmem *m, uint64_t start, uint64_t size)
{
	return start >= LAYOUT_HIGH_START && size > 0 && gmem_ptr(m, start, size) != NULL;
}

int bzimage_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
		 struct kite_err *err)
{
	memset(bi, 0, sizeof(*bi));
	if (len < BP_INIT_SIZE + 4)
		return err_set(err, KITE_EXIT_IMAGE, "bzImage truncated: %zu bytes, header needs %d", len,
			       BP_INIT_SIZE + 4);
	if (!is_bzimage(img, len))
		return err_set(err, KITE_EXIT_IMAGE, "not a bzImage: boot signature or HdrS magic missing");
	uint16_t version = rd16(img + BP_VERSION);
	if (version < 0x020c)
		return err_set(err, KITE_EXIT_IMAGE,
			       "bzImage boot protocol %u.%02u too old: 64-bit boot needs 2.12",
			       version >> 8, version & 0xff);
	if (!(rd16(img + BP_XLOADFLAGS) & XLF_KERNEL_64))
		return err_set(err, KITE_EXIT_IMAGE, "bzImage has no 64-bit entry point (XLF_KERNEL_64 unset)");
	if (!(img[BP_LOADFLAGS] & LOADED_HIGH))
		return err_set(err, KITE_EXIT_IMAGE, "bzImage is not a loaded-high kernel");

	unsigned setup_sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	size_t setup_size = ((size_t)setup_sects + 1) * 512;
	if (setup_size >= len)
		return err_set(err, KITE_EXIT_IMAGE, "bzImage truncated: setup is %zu bytes of a %zu-byte file",
			       setup_size, len);
	size_t ksize = len - setup_size;

	uint64_t load = rd64(img + BP_PREF_ADDRESS);
	uint32_t align = rd32(img + BP_KERNEL_ALIGNMENT);
	uint32_t init_size = rd32(img + BP_INIT_SIZE);
	if (load < LAYOUT_HIGH_START || (align && (align & (align - 1))))
		return err_set(err, KITE_EXIT_IMAGE, "bzImage header invalid: pref_address 0x%llx, alignment 0x%x",
			       (unsigned long long)load, align);
	uint64_t span = init_size > ksize ? init_size : ksize;
	if (!fits_high(m, load, span))
		return err_set(err, KITE_EXIT_IMAGE,
			       "kernel too large for guest memory: needs 0x%llx-0x%llx, RAM below the hole ends at 0x%llx",
			       (unsigned long long)load, (unsigned long long)(load + span),
			       (unsigned long long)gmem_low_end(m));
	gmem_write(m, load, img + setup_size, ksize);

	/* The header copied into the zero page: from 0x1f1 to the end the jump byte gives. */
	size_t hdr_end = (size_t)BP_HEADER + img[BP_JUMP + 1];
	if (hdr_end > SETUP_HDR_MAX_END)
		hdr_end = SETUP_HDR_MAX_END;
	if (hdr_end < BP_INIT_SIZE + 4)
		hdr_end = BP_INIT_SIZE + 4;
	bi->setup_hdr_len = hdr_end - SETUP_HDR_START;
	memcpy(bi->setup_hdr, img + SETUP_HDR_START, bi->setup_hdr_len);

	bi->mode = BOOT_LINUX64;
	bi->is_bzimage = 1;
	bi->version = version;
	bi->entry = load + 0x200;
	bi->load_start = load;
	bi->load_end = load + span;
	bi->initrd_addr_max = rd32(img + BP_INITRD_ADDR_MAX);
	bi->cmdline_size = rd32(img + BP_CMDLINE_SIZE) + 1;
	if (bi->cmdline_size < 2 || bi->cmdline_size > LAYOUT_CMDLINE_MAX)
		bi->cmdline_size = LAYOUT_CMDLINE_MAX;
	return 0;
}

/* Looks for Xen's PHYS32_ENTRY note inside one PT_NOTE segment. */
static int find_pvh_note(const uint8_t *p, uint64_t size, uint64_t *entry)
{
	uint64_t off = 0;
	/* Each note is at least 12 bytes, so this loop ends within size/12 steps. */
	while (size - off >= 12) {
		uint32_t namesz = rd32(p + off), descsz = rd32(p + off + 4), type = rd32(p + off + 8);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
		if (desc_off > size || next > size)
			return 0;
		if (namesz == 4 && memcmp(p + name_off, "Xen", 4) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			if (descsz == 4)
				*entry = rd32(p + desc_off);
			else if (descsz == 8)
				*entry = rd64(p + desc_off);
			else
				return 0;
			return 1;
		}
		off = next;
	}
	return 0;
}

int elf_load(struct gmem *m, const uint8_t *img, size_t len, struct boot_image *bi,
	     struct kite_err *err)
{
	memset(bi, 0, sizeof(*bi));
	if (len < sizeof(Elf64_Ehdr))
		return err_set(err, KITE_EXIT_IMAGE, "ELF truncated: %zu bytes", len);
	Elf64_Ehdr eh;
	memcpy(&eh, img, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
		return err_set(err, KITE_EXIT_IMAGE, "ELF is not a 64-bit little-endian x86-64 image");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
		return err_set(err, KITE_EXIT_IMAGE, "ELF program headers invalid (entsize %u, count %u)",
			       eh.e_phentsize, eh.e_phnum);
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return err_set(err, KITE_EXIT_IMAGE, "ELF program headers past the end of the file");

	Elf64_Phdr ph[64];
	memcpy(ph, img + eh.e_phoff, (size_t)eh.e_phnum * sizeof(Elf64_Phdr));
	uint64_t lo = UINT64_MAX, hi = 0, pvh_entry = 0;
	int nload = 0, have_pvh = 0, entry_in_text = 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_offset > len || p->p_filesz > len - p->p_offset)
			return err_set(err, KITE_EXIT_IMAGE, "ELF segment %d lies past the end of the file", i);
		if (p->p_type == PT_NOTE && !have_pvh)
			have_pvh = find_pvh_note(img + p->p_offset, p->p_filesz, &pvh_entry);
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		if (p->p_filesz > p->p_memsz)
			return err_set(err, KITE_EXIT_IMAGE, "ELF segment %d: file size exceeds memory size", i);
		if (p->p_paddr + p->p_memsz < p->p_paddr || !fits_high(m, p->p_paddr, p->p_memsz))
			return err_set(err, KITE_EXIT_IMAGE,
				       "ELF segment %d (0x%llx+0x%llx) is outside guest RAM above 1 MiB",
				       i, (unsigned long long)p->p_paddr, (unsigned long long)p->p_memsz);
		for (int j = 0; j < i; j++) {
			const Elf64_Phdr *q = &ph[j];
			if (q->p_type != PT_LOAD || q->p_memsz == 0)
				continue;
			if (p->p_paddr < q->p_paddr + q->p_memsz && q->p_paddr < p->p_paddr + p->p_memsz)
				return err_set(err, KITE_EXIT_IMAGE, "ELF segments %d and %d overlap", j, i);
		}
		if (eh.e_entry >= p->p_paddr && eh.e_entry - p->p_paddr < p->p_memsz)
			entry_in_text = 1;
		nload++;
		if (p->p_paddr < lo)
			lo = p->p_paddr;
		if (p->p_paddr + p->p_memsz > hi)
			hi = p->p_paddr + p->p_memsz;
	}
	if (nload == 0)
		return err_set(err, KITE_EXIT_IMAGE, "ELF has no loadable segment");

	uint64_t entry = have_pvh ? pvh_entry : eh.e_entry;
	if (have_pvh) {
		entry_in_text = 0;
		for (int i = 0; i < eh.e_phnum; i++)
			if (ph[i].p_type == PT_LOAD && entry >= ph[i].p_paddr &&
			    entry - ph[i].p_paddr < ph[i].p_memsz)
				entry_in_text = 1;
	}
	if (!entry_in_text)
		return err_set(err, KITE_EXIT_IMAGE, "ELF entry point 0x%llx is not inside a loaded segment",
			       (unsigned long long)entry);

	/* Validated everything; now copy. */
	for (int i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		uint8_t *dst = gmem_ptr(m, p->p_paddr, p->p_memsz);
		memcpy(dst, img + p->p_offset, p->p_filesz);
		memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
	}
	bi->mode = have_pvh ? BOOT_PVH : BOOT_LINUX64;
	bi->entry = entry;
	bi->load_start = lo;
	bi->load_end = hi;
	bi->initrd_addr_max = 0xffffffffu;
	bi->cmdline_size = ELF_CMDLINE_MAX;
	return 0;
}

int initrd_place(const struct gmem *m, const struct boot_image *bi, uint64_t size,
		 uint64_t *gpa, struct kite_err *err)
{
	uint64_t top = gmem_low_end(m);
	uint64_t max = (uint64_t)bi->initrd_addr_max + 1;
	if (bi->initrd_addr_max && max < top)
		top = max;
	top &= ~0xfffULL;
	if (size == 0 || size > top || ((top - size) & ~0xfffULL) < bi->load_end)
		return err_set(err, KITE_EXIT_IMAGE,
			       "initrd of %llu bytes does not fit in guest memory between the kernel (ends 0x%llx) and 0x%llx",
			       (unsigned long long)size, (unsigned long long)bi->load_end,
			       (unsigned long long)top);
	*gpa = (top - size) & ~0xfffULL;
	return 0;
}
