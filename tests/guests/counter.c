/* A guest with state to carry across a snapshot or migration: a periodic LAPIC
 * timer ticks (vector 0x40), and on each tick the guest counts, writes a page of
 * a 4 MiB buffer with a pattern of the count (dirtying memory as it goes), checks
 * the last pages it wrote, and checks that the TSC never went backwards. It
 * prints "count N tsc T" at each tick. With "stop=N" on the command line it ends
 * (DONE) when the count reaches N, after checking the whole buffer once more, so
 * a restored or migrated guest shows it finished its work with correct memory. */
#include "guest.h"

#define VEC_TIMER 0x40
#define VEC_SPURIOUS 0xff
#define PAGES 1024
#define PAGE 4096

static volatile uint64_t ticks;
static uint8_t buffer[PAGES * PAGE] __attribute__((aligned(4096)));

__attribute__((interrupt)) static void timer_isr(struct interrupt_frame *f)
{
	(void)f;
	ticks++;
	lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f)
{
	(void)f;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static void put_dec(char *out, uint64_t v)
{
	char d[24];
	int n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*out++ = d[--n];
	*out = 0;
}

static uint64_t arg_stop(void)
{
	const char *c = boot_cmdline();
	for (; c && *c; c++) {
		if (c[0] == 's' && c[1] == 't' && c[2] == 'o' && c[3] == 'p' && c[4] == '=') {
			uint64_t v = 0;
			for (c += 5; *c >= '0' && *c <= '9'; c++)
				v = v * 10 + (uint64_t)(*c - '0');
			return v;
		}
	}
	return 0;
}

/* Page p, once written by count `stamp`, holds the stamp at its start and
 * (p * 7 + k + stamp) in the 8 bytes at every 256-byte step k (a few stores per
 * page: guest code runs emulated on some hosts). */
static void write_page(unsigned p, uint64_t stamp)
{
	volatile uint64_t *pg = (volatile uint64_t *)(buffer + (uint64_t)p * PAGE);
	for (unsigned k = 1; k < PAGE / 256; k++)
		pg[k * 32] = p * 7 + k + stamp;
	pg[0] = stamp;
}

static int page_ok(unsigned p)
{
	volatile const uint64_t *pg = (volatile const uint64_t *)(buffer + (uint64_t)p * PAGE);
	uint64_t stamp = pg[0];
	if (!stamp)
		return 1; /* not written yet */
	for (unsigned k = 1; k < PAGE / 256; k++)
		if (pg[k * 32] != p * 7 + k + stamp)
			return 0;
	return 1;
}

int main(void)
{
	uint64_t stop = arg_stop();
	idt_set_gate(VEC_TIMER, timer_isr);
	idt_set_gate(VEC_SPURIOUS, spurious_isr);
	idt_load();
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_TIMER_DIV, 0xb);                  /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER); /* periodic */
	lapic_write(LAPIC_TIMER_INIT, 20000000u);           /* 20 ms at 1 GHz */

	uint64_t count = 0, seen = 0, last_tsc = rdtsc();
	char line[80];
	for (;;) {
		while (ticks == seen)
			irq_enable_and_halt();
		seen = ticks;
		count++;
		uint64_t t = rdtsc();
		GUEST_ASSERT(t >= last_tsc); /* the TSC never goes backwards */
		last_tsc = t;
		unsigned p = (unsigned)(count % PAGES);
		write_page(p, count);
		/* the last pages written still hold what was written */
		for (unsigned k = 0; k < 8; k++)
			GUEST_ASSERT(page_ok((p + PAGES - k) % PAGES));
		char *o = line;
		for (const char *s = "count "; *s;)
			*o++ = *s++;
		put_dec(o, count);
		while (*o)
			o++;
		for (const char *s = " tsc "; *s;)
			*o++ = *s++;
		put_dec(o, t);
		while (*o)
			o++;
		*o++ = '\n';
		*o = 0;
		serial_puts(line);
		if (stop && count >= stop) {
			for (unsigned q = 0; q < PAGES; q++)
				GUEST_ASSERT(page_ok(q));
			serial_puts("counter: done\n");
			return 0;
		}
	}
}
