/* A PVH guest (Xen's hvm_start_info boot protocol, which Linux and Firecracker
 * also use): kite finds the XEN_ELFNOTE_PHYS32_ENTRY note and enters pvh_start in
 * 32-bit protected mode, paging off, ebx = &hvm_start_info. All in 32-bit code:
 * the checks end in a ucall (ASSERT with this file's line, or DONE).
 * The test runs it with --cmdline "pvh-test cmdline" and a 4096-byte initrd
 * starting with "KITEINRD". */

/* From src/devices/testdev.h (a C header, so not includable here). */
#define UCALL_PORT 0xf4
#define UCALL_MAGIC 0x4c43554b
#define UCALL_ASSERT 2

/* Compare a 32-bit value with an expected one; on mismatch report this line
 * and the value seen. */
#define EXPECT_EQ(val, expected) \
	movl val, %edx; cmpl expected, %edx; je 1f; movl $__LINE__, %eax; jmp fail; 1:

	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 4                 /* descsz: a 32-bit entry address */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start

	.code32
	.section .text, "ax"

/* The ELF header's e_entry. PVH boot must not start here; these bytes decode
 * the same in 32- and 64-bit mode and report that it did. */
	.globl elf_entry
elf_entry:
	movl $uc_wrong_entry, %eax
	movw $UCALL_PORT, %dx
	outl %eax, %dx
	jmp halt

	.globl pvh_start
pvh_start:
	movl $stack_top, %esp

	/* hvm_start_info: magic, version >= 1 */
	EXPECT_EQ((%ebx), $0x336ec578)
	movl 4(%ebx), %edx
	cmpl $1, %edx
	jae 1f
	movl $__LINE__, %eax
	jmp fail
1:
	/* Protected mode without paging, long mode off. */
	movl %cr0, %edx
	andl $0x80000001, %edx
	EXPECT_EQ(%edx, $1)
	movl $0xc0000080, %ecx
	rdmsr
	andl $0x500, %eax       /* EFER.LME | EFER.LMA */
	EXPECT_EQ(%eax, $0)

	/* cmdline_paddr (u64 at +24): below 4 GiB, the string we were given. */
	EXPECT_EQ(28(%ebx), $0)
	movl 24(%ebx), %esi
	movl $expected_cmdline, %edi
2:	movzbl (%esi), %edx
	movzbl (%edi), %ecx
	cmpl %ecx, %edx
	je 3f
	movl $__LINE__, %eax
	jmp fail
3:	incl %esi
	incl %edi
	testl %ecx, %ecx
	jnz 2b

	/* rsdp_paddr (u64 at +32): the ACPI RSDP. */
	EXPECT_EQ(36(%ebx), $0)
	movl 32(%ebx), %esi
	EXPECT_EQ((%esi), $0x20445352)    /* "RSD " */
	EXPECT_EQ(4(%esi), $0x20525450)   /* "PTR " */

	/* memmap (paddr u64 at +40, entries u32 at +48): first entry RAM at 0. */
	movl 48(%ebx), %edx
	testl %edx, %edx
	jnz 1f
	movl $__LINE__, %eax
	jmp fail
1:	movl 40(%ebx), %esi
	EXPECT_EQ((%esi), $0)
	EXPECT_EQ(4(%esi), $0)
	EXPECT_EQ(16(%esi), $1)

	/* One module, the initrd: nr_modules at +12, modlist_paddr at +16. */
	EXPECT_EQ(12(%ebx), $1)
	movl 16(%ebx), %esi
	EXPECT_EQ(12(%esi), $0)           /* size, high half */
	EXPECT_EQ(8(%esi), $4096)         /* size */
	EXPECT_EQ(4(%esi), $0)            /* paddr, high half */
	movl (%esi), %esi
	EXPECT_EQ((%esi), $0x4554494b)    /* "KITE" */
	EXPECT_EQ(4(%esi), $0x44524e49)   /* "INRD" */

	/* All good: say so on COM1, then DONE. */
	movl $ok_line, %esi
4:	movb (%esi), %cl
	testb %cl, %cl
	jz 6f
	movw $0x3fd, %dx
5:	inb %dx, %al
	testb $0x20, %al
	jz 5b
	movw $0x3f8, %dx
	movb %cl, %al
	outb %al, %dx
	incl %esi
	jmp 4b
6:	movl $uc_done, %eax
	movw $UCALL_PORT, %dx
	outl %eax, %dx
	jmp halt

/* eax = the failing line, edx = the value seen. */
fail:
	movl %eax, uc_assert + 8
	movl %edx, uc_assert + 16
	movl $uc_assert, %eax
	movw $UCALL_PORT, %dx
	outl %eax, %dx

/* kite stops the vCPU at DONE or ASSERT; still running means it ignored the
 * ucall: triple-fault (ud2 with an empty IDT) rather than hang the test.
 * Decodes the same in 32- and 64-bit mode, like elf_entry. */
halt:
	cli
	movl $empty_idt, %eax
	lidt (%eax)
	ud2

	.section .rodata
expected_cmdline:
	.asciz "pvh-test cmdline"
ok_line:
	.asciz "pvh: all checks passed in 32-bit protected mode\n"

/* struct ucall: magic, cmd, line, reserved, args[2], file[64], msg[128] */
#define UCALL(name, cmd, msg)                         \
	.balign 8;                                    \
name:	.long UCALL_MAGIC, cmd, 0, 0;                 \
	.quad 0, 0;                                   \
9:	.asciz "tests/guests/pvh.S";                  \
	.fill 64 - (. - 9b), 1, 0;                    \
8:	.asciz msg;                                   \
	.fill 128 - (. - 8b), 1, 0

	.section .data
	.balign 8
empty_idt:
	.fill 10, 1, 0          /* limit 0, base 0: 6 bytes in 32-bit mode, 10 in 64-bit */
UCALL(uc_assert, UCALL_ASSERT, "PVH boot check failed (args[0] = value seen)")
UCALL(uc_done, 3, "")
UCALL(uc_wrong_entry, UCALL_ASSERT, "entered at the ELF e_entry, not the PVH note's entry")

	.section .note.GNU-stack, "", @progbits
