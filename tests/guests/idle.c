/* Says it is up, then halts with interrupts off for ever: a guest that never
 * ends by itself, for tests that stop kite from outside (signals). */
#include "guest.h"

int main(void)
{
	serial_puts("idle guest up\n");
	for (;;)
		__asm__ volatile("cli; hlt");
	return 0;
}
