#include "guest.h"

static struct ucall uc;

static void copy(char *dst, const char *src, unsigned cap)
{
	unsigned i = 0;
	for (; src && src[i] && i + 1 < cap; i++)
		dst[i] = src[i];
	dst[i] = 0;
}

void serial_puts(const char *s)
{
	for (; *s; s++) {
		while (!(inb(0x3f8 + 5) & 0x20))
			;
		outb(0x3f8, (uint8_t)*s);
	}
}

void ucall(uint32_t cmd, const char *file, uint32_t line, const char *msg, uint64_t a0, uint64_t a1)
{
	uc.magic = UCALL_MAGIC;
	uc.cmd = cmd;
	uc.line = line;
	uc.args[0] = a0;
	uc.args[1] = a1;
	copy(uc.file, file, sizeof(uc.file));
	copy(uc.msg, msg, sizeof(uc.msg));
	outl(UCALL_PORT, (uint32_t)(uintptr_t)&uc);
	if (cmd == UCALL_ASSERT)
		for (;;)
			__asm__ volatile("cli; hlt");
}

void guest_print(const char *msg) { ucall(UCALL_PRINT, "", 0, msg, 0, 0); }

void guest_done(void)
{
	ucall(UCALL_DONE, "", 0, "", 0, 0);
	for (;;)
		__asm__ volatile("cli; hlt");
}
