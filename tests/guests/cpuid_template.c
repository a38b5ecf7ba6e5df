/* CPUID and MSRs as a CPU template left them. The command line says what to
 * check and what to show, in hex without 0x, space separated:
 *   c=LEAF,SUB,R,MASK,VALUE  CPUID(LEAF,SUB) register R (a, b, c or d) & MASK == VALUE
 *   m=ADDR,VALUE             RDMSR(ADDR) == VALUE
 *   p=LEAF,SUB               print "cpuid LEAF SUB EAX EBX ECX EDX" on COM1
 * Each failed check prints a "FAIL ..." line; then "cpuid_template: ok" or
 * "cpuid_template: N failed" (for runs without --test-device, through the API),
 * and the test device hears DONE or the failed assertion. */
#include "guest.h"

static const char *hex_word(const char *p, uint64_t *out)
{
	uint64_t v = 0;
	int n = 0;
	for (;; p++, n++) {
		char c = *p;
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			break;
		v = (v << 4) | d;
	}
	*out = v;
	return n && n <= 16 ? p : 0;
}

static void put_hex(char **o, uint64_t v, int digits)
{
	for (int i = digits - 1; i >= 0; i--)
		*(*o)++ = "0123456789abcdef"[(v >> (4 * i)) & 0xf];
}

static void put_str(char **o, const char *s)
{
	while (*s)
		*(*o)++ = *s++;
}

static uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

int main(void)
{
	const char *p = boot_cmdline();
	unsigned failed = 0, checks = 0;
	char line[160];
	while (*p) {
		if (*p == ' ') {
			p++;
			continue;
		}
		char kind = p[0];
		const char *tok = p;
		GUEST_ASSERT(p[1] == '=');
		p += 2;
		uint64_t a[5] = {0};
		unsigned want = kind == 'c' ? 5 : 2;
		for (unsigned i = 0; i < want; i++) {
			if (kind == 'c' && i == 2) {
				GUEST_ASSERT(*p >= 'a' && *p <= 'd');
				a[2] = (uint64_t)(*p++ - 'a');
			} else {
				p = hex_word(p, &a[i]);
				GUEST_ASSERT(p != 0);
			}
			if (i + 1 < want)
				GUEST_ASSERT(*p++ == ',');
		}
		GUEST_ASSERT(*p == ' ' || *p == 0);
		char *o = line;
		if (kind == 'p') {
			uint32_t r[4];
			cpuid((uint32_t)a[0], (uint32_t)a[1], r);
			put_str(&o, "cpuid ");
			put_hex(&o, a[0], 8);
			put_str(&o, " ");
			put_hex(&o, a[1], 8);
			for (int i = 0; i < 4; i++) {
				put_str(&o, " ");
				put_hex(&o, r[i], 8);
			}
		} else if (kind == 'c') {
			uint32_t r[4];
			cpuid((uint32_t)a[0], (uint32_t)a[1], r);
			checks++;
			if ((r[a[2]] & a[3]) != a[4]) {
				failed++;
				put_str(&o, "FAIL ");
				while (tok < p)
					*o++ = *tok++;
				put_str(&o, " got ");
				put_hex(&o, r[a[2]], 8);
			}
		} else if (kind == 'm') {
			uint64_t v = rdmsr((uint32_t)a[0]);
			checks++;
			if (v != a[1]) {
				failed++;
				put_str(&o, "FAIL ");
				while (tok < p)
					*o++ = *tok++;
				put_str(&o, " got ");
				put_hex(&o, v, 16);
			}
		} else {
			GUEST_ASSERT(!"unknown token on the command line");
		}
		if (o != line) {
			put_str(&o, "\n");
			*o = 0;
			serial_puts(line);
		}
	}
	char *o = line;
	put_str(&o, "cpuid_template: ");
	if (failed) {
		put_hex(&o, failed, 2);
		put_str(&o, " failed");
	} else {
		put_str(&o, "ok");
	}
	put_str(&o, "\n");
	*o = 0;
	serial_puts(line);
	GUEST_ASSERT(checks > 0);
	GUEST_ASSERT_EQ(failed, 0);
	return 0;
}
