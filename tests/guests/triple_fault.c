/* A fault with an empty IDT: the #DE cannot be delivered (#GP), nor can the #GP
 * (#DF), nor the #DF: a triple fault, i.e. a shutdown, which kite treats as a
 * guest reset. (A divide error rather than int3: KVM's instruction emulator, which
 * runs CPL0 code on the software KVM of the test machines, cannot emulate INT n
 * in long mode and reports an internal error instead.) */
#include "guest.h"

int main(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = {0, 0};
	guest_print("triple-fault: loading an empty IDT");
	__asm__ volatile("lidt %0" ::"m"(empty));
	__asm__ volatile("xor %%ecx, %%ecx; div %%ecx" ::: "eax", "ecx", "edx", "cc");
	GUEST_ASSERT(!"a divide error with an empty IDT returned");
	return 0;
}
