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
		guest_shutdown();
}

/* kite stops the vCPU at a DONE or ASSERT ucall, so returning from one means kite
 * ignored it: end the VM by a triple fault rather than hang the test until its
 * timeout. kite reports that as a reset, never as "test guest done". */
void guest_shutdown(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = {0, 0};
	__asm__ volatile("cli; lidt %0; ud2" ::"m"(empty));
	for (;;)
		__asm__ volatile("hlt");
}

void guest_print(const char *msg) { ucall(UCALL_PRINT, "", 0, msg, 0, 0); }

void guest_done(void)
{
	ucall(UCALL_DONE, "", 0, "", 0, 0);
	guest_shutdown();
}

const char *boot_cmdline(void)
{
	/* boot_params.hdr.cmd_line_ptr (zero-page.rst); ext_cmd_line_ptr is 0 below 4 GiB. */
	return (const char *)(uintptr_t)*(volatile uint32_t *)(boot_params_gpa + 0x228);
}

int mem_eq(const void *a, const void *b, unsigned n)
{
	const volatile uint8_t *x = a, *y = b;
	for (unsigned i = 0; i < n; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

unsigned str_len(const char *s)
{
	unsigned n = 0;
	while (s[n])
		n++;
	return n;
}

int str_eq(const char *a, const char *b)
{
	unsigned n = str_len(a);
	return n == str_len(b) && mem_eq(a, b, n);
}

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, attr;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

void idt_set_gate(uint8_t vector, void (*handler)(struct interrupt_frame *))
{
	uint64_t a = (uint64_t)(uintptr_t)handler;
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[vector] = (struct idt_gate){
		.off_lo = (uint16_t)a, .sel = cs, .ist = 0, .attr = 0x8e, /* present, interrupt gate */
		.off_mid = (uint16_t)(a >> 16), .off_hi = (uint32_t)(a >> 32), .zero = 0};
}

void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
	__asm__ volatile("lidt %0" ::"m"(idtr));
}
