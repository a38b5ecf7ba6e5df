/* Malformed ucalls kite must refuse without stopping: a pointer outside RAM,
 * a struct running past the end of RAM, a bad magic, a 1-byte OUT, an unknown
 * command. Then a normal DONE. Run with --mem 64. */
#include "guest.h"

#define RAM_END (64ULL << 20)

static struct ucall bad;

int main(void)
{
	outl(UCALL_PORT, 0xd0000000u);     /* in the MMIO hole */
	outl(UCALL_PORT, 0x80000000u);     /* above RAM */
	/* The last 16 bytes of RAM: the struct would run past the end. */
	struct ucall *tail = (struct ucall *)(uintptr_t)(RAM_END - 16);
	tail->magic = UCALL_MAGIC;
	tail->cmd = UCALL_DONE;
	outl(UCALL_PORT, (uint32_t)(RAM_END - 16));

	bad.magic = 0xdeadbeef;
	bad.cmd = UCALL_DONE;
	outl(UCALL_PORT, (uint32_t)(uintptr_t)&bad);
	outb(UCALL_PORT, 0x12);
	bad.magic = UCALL_MAGIC;
	bad.cmd = 77;
	outl(UCALL_PORT, (uint32_t)(uintptr_t)&bad);
	guest_print("ucall-bad: survived");
	return 0;
}
