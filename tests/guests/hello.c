/* Prints on COM1 and finishes: the smallest end-to-end check of boot, PIO and ucall. */
#include "guest.h"

int main(void)
{
	serial_puts("hello from a kite test guest\n");
	return 0;
}
