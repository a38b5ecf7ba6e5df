/* The shortest run: the first thing the guest does is the ucall OUT that ends the
 * VMM (kite --test-device: UCALL_DONE, exit 0; QEMU isa-debug-exit at 0xf4). Used
 * by bench/startup.sh to time exec -> exit. */
#include "pvh.h"

	.code32
	.text
	.globl pvh_start
pvh_start:
	UCALL_OUT(uc_done)
1:	cli
	hlt
	jmp 1b

	PVH_NOTE(pvh_start)
	UCALL_DONE_STRUCT(uc_done)
	.section .note.GNU-stack, "", @progbits
