/* An instruction KVM's emulator does not implement (LSL), with its operand in
 * MMIO, so KVM has to emulate it and cannot: KVM_EXIT_INTERNAL_ERROR. kite must
 * exit 5, name the exit and dump the registers: rip at `unemulatable`, rax the
 * MMIO address. */
#include "guest.h"

int main(void)
{
	guest_print("emulation-failure: LSL from MMIO");
	__asm__ volatile(".globl unemulatable\n"
			 "unemulatable: lsl (%%rax), %%ecx"
			 ::"a"(0xd0000000ULL) : "ecx", "cc", "memory");
	GUEST_ASSERT(!"LSL from MMIO was emulated");
	return 0;
}
