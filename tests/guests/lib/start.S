/* Entry from kite in 64-bit mode: give the guest a stack, run main(), report done. */
	.section .text.start, "ax"
	.globl _start
_start:
	lea stack_top(%rip), %rsp
	xor %ebp, %ebp
	call main
	call guest_done
1:	hlt
	jmp 1b
	.section .note.GNU-stack, "", @progbits
