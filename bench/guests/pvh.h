/* Shared by the bench guests (bench/guests/*.S): 32-bit PVH guests that both kite and
 * QEMU (-M microvm, which boots an ELF -kernel only through a PVH note) can start.
 * Entered at the note's address in 32-bit protected mode, paging off, ebx =
 * &hvm_start_info. The ucall layout mirrors src/devices/testdev.h (a C header). */
#ifndef BENCH_PVH_H
#define BENCH_PVH_H

#define UCALL_PORT 0xf4
#define UCALL_MAGIC 0x4c43554b /* "KUCL" */
#define UCALL_DONE 3
#define COM1 0x3f8

/* The Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18) naming the 32-bit entry. */
#define PVH_NOTE(entry)                          \
	.pushsection .note.Xen, "a", @note;      \
	.balign 4;                               \
	.long 4, 4, 18;                          \
	.asciz "Xen";                            \
	.long entry;                             \
	.popsection

/* A struct ucall with cmd UCALL_DONE: magic, cmd, line, reserved, args[2],
 * file[64], msg[128]; 8-byte aligned. */
#define UCALL_DONE_STRUCT(name)                  \
	.pushsection .data;                      \
	.balign 8;                               \
name:	.long UCALL_MAGIC, UCALL_DONE, 0, 0;     \
	.quad 0, 0;                              \
	.fill 64 + 128, 1, 0;                    \
	.popsection

/* The ucall: the 4-byte OUT of the struct's address to port 0xf4. kite (with
 * --test-device) ends with exit code 0; QEMU's isa-debug-exit at 0xf4 exits. */
#define UCALL_OUT(name)                          \
	movl $name, %eax;                        \
	movw $UCALL_PORT, %dx;                   \
	outl %eax, %dx

#endif
