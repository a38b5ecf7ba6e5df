/* N port writes to an unclaimed port, then the ucall DONE. N is the first decimal
 * number on the kernel command line (hvm_start_info.cmdline_paddr); none = 0.
 * The loop is the same three instructions bench/exitcost.c runs in its bare-KVM
 * guest: out %al,$0x80; dec %ecx; jnz. */
#include "pvh.h"

	.code32
	.text
	.globl pvh_start
pvh_start:
	xorl %ecx, %ecx
	movl 24(%ebx), %esi      /* cmdline_paddr (low half; below 4 GiB) */
	testl %esi, %esi
	jz run
skip:	movzbl (%esi), %eax      /* skip to the first digit */
	testl %eax, %eax
	jz run
	subl $'0', %eax
	cmpl $9, %eax
	jbe digit
	incl %esi
	jmp skip
digit:	imull $10, %ecx, %ecx
	addl %eax, %ecx
	incl %esi
	movzbl (%esi), %eax
	subl $'0', %eax
	cmpl $9, %eax
	jbe digit
run:	xorl %eax, %eax
	testl %ecx, %ecx
	jz done
loop:	outb %al, $0x80
	decl %ecx
	jnz loop
done:	UCALL_OUT(uc_done)
1:	cli
	hlt
	jmp 1b

	PVH_NOTE(pvh_start)
	UCALL_DONE_STRUCT(uc_done)
	.section .note.GNU-stack, "", @progbits
