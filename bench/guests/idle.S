/* An idle guest: prints one line on COM1, then halts forever with interrupts off
 * (the vCPU blocks in KVM). bench/startup.sh reads the VMM's memory once the line
 * has appeared, then kills the VMM. */
#include "pvh.h"

	.code32
	.text
	.globl pvh_start
pvh_start:
	movl $msg, %esi
next:	movb (%esi), %cl
	testb %cl, %cl
	jz idle
	movw $COM1 + 5, %dx     /* LSR: wait for THRE */
1:	inb %dx, %al
	testb $0x20, %al
	jz 1b
	movw $COM1, %dx
	movb %cl, %al
	outb %al, %dx
	incl %esi
	jmp next
idle:	cli
	hlt
	jmp idle

	PVH_NOTE(pvh_start)
	.section .rodata
msg:	.asciz "bench-idle: running\n"
	.section .note.GNU-stack, "", @progbits
