/* Reads one line from COM1 (polling LSR.DR) and prints it back: console input from
 * kite's stdin reaches the guest. */
#include "guest.h"

int main(void)
{
	char line[64];
	unsigned n = 0;
	serial_puts("ready\n");
	while (n + 1 < sizeof(line)) {
		while (!(inb(0x3f8 + 5) & 0x01))
			;
		char c = (char)inb(0x3f8);
		if (c == '\n')
			break;
		line[n++] = c;
	}
	line[n] = 0;
	serial_puts("got: ");
	serial_puts(line);
	serial_puts("\n");
	return 0;
}
