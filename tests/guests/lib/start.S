/* Entry from kite in 64-bit mode: keep the zero page pointer (rsi, Linux 64-bit
 * boot protocol), give the guest a stack, run main(), report done. */
	.section .text.start, "ax"
	.globl _start
_start:
	mov %rsi, boot_params_gpa(%rip)
	lea stack_top(%rip), %rsp
	xor %ebp, %ebp
	call main
	call guest_done
1:	hlt
	jmp 1b

	.section .data
	.globl boot_params_gpa
	.balign 8
boot_params_gpa:
	.quad 0
	.section .note.GNU-stack, "", @progbits
