/* The register file gdb's amd64 target expects without a target description:
 * offsets, sizes, the x87 tag word, and which writes are refused. */
#include "unit.h"

#include "gdb/regs.h"

static struct gdb_cpu sample(void)
{
	struct gdb_cpu c;
	memset(&c, 0, sizeof(c));
	c.regs.rax = 0x1111111111111111ULL;
	c.regs.rsp = 0x7777777777777777ULL;
	c.regs.r15 = 0xf0f0f0f0f0f0f0f0ULL;
	c.regs.rip = 0xffffffff81000000ULL;
	c.regs.rflags = 0x246;
	c.sregs.cs.selector = 0x10;
	c.sregs.ss.selector = 0x18;
	c.sregs.gs.selector = 0x2b;
	c.fpu.fcw = 0x37f;
	c.fpu.fsw = 0x3800; /* TOP = 7 */
	c.fpu.ftwx = 0x80;  /* physical register 7 in use: ST(0) */
	memcpy(c.fpu.fpr[0], "\x00\x00\x00\x00\x00\x00\x00\x80\xff\x3f", 10); /* 1.0 */
	c.fpu.last_ip = 0x1122334455667788ULL;
	c.fpu.last_dp = 0x99aabbccddeeff00ULL;
	c.fpu.last_opcode = 0x7ff;
	for (int i = 0; i < 16; i++)
		memset(c.fpu.xmm[i], i + 1, 16);
	c.fpu.mxcsr = 0x1f80;
	return c;
}

static void spans(void **state)
{
	(void)state;
	static const struct { unsigned n, off, size; } want[] = {
		{0, 0, 8}, {7, 56, 8}, {15, 120, 8}, {16, 128, 8}, {17, 136, 4}, {18, 140, 4},
		{23, 160, 4}, {24, 164, 10}, {31, 234, 10}, {32, 244, 4}, {39, 272, 4},
		{40, 276, 16}, {55, 516, 16}, {56, 532, 4},
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned off = 99, size = 99;
		assert_int_equal(gdb_reg_span(want[i].n, &off, &size), 0);
		assert_int_equal(off, want[i].off);
		assert_int_equal(size, want[i].size);
	}
	unsigned off, size;
	assert_int_equal(gdb_reg_span(57, &off, &size), -1);
	assert_int_equal(gdb_reg_span(~0u, &off, &size), -1);
	/* the last register ends the packet */
	gdb_reg_span(GDB_NUM_REGS - 1, &off, &size);
	assert_int_equal(off + size, GDB_G_SIZE);
}

static void encode_layout(void **state)
{
	(void)state;
	struct gdb_cpu c = sample();
	uint8_t g[GDB_G_SIZE];
	gdb_regs_encode(&c, g);
	assert_true(le64(g) == c.regs.rax);
	assert_true(le64(g + 56) == c.regs.rsp); /* rsp after rbp, not in kvm_regs order */
	assert_true(le64(g + 120) == c.regs.r15);
	assert_true(le64(g + 128) == c.regs.rip);
	assert_int_equal(le32(g + 136), 0x246);
	assert_int_equal(le32(g + 140), 0x10);
	assert_int_equal(le32(g + 144), 0x18);
	assert_int_equal(le32(g + 160), 0x2b);
	assert_memory_equal(g + 164, c.fpu.fpr[0], 10);
	assert_int_equal(le32(g + 244), 0x37f);
	assert_int_equal(le32(g + 248), 0x3800);
	/* full tag: physical 7 holds a valid 1.0 (00), all others empty (11) */
	assert_int_equal(le32(g + 252), 0x3fff);
	assert_int_equal(le32(g + 256), 0x11223344);
	assert_int_equal(le32(g + 260), 0x55667788);
	assert_int_equal(le32(g + 264), 0x99aabbcc);
	assert_int_equal(le32(g + 268), 0xddeeff00);
	assert_int_equal(le32(g + 272), 0x7ff);
	assert_int_equal(g[276], 1);
	assert_int_equal(g[516 + 15], 16);
	assert_int_equal(le32(g + 532), 0x1f80);
}

static void tag_word_kinds(void **state)
{
	(void)state;
	struct gdb_cpu c = sample();
	c.fpu.fsw = 0; /* TOP = 0: ST(i) is physical i */
	c.fpu.ftwx = 0x0f;
	memset(c.fpu.fpr, 0, sizeof(c.fpu.fpr));
	memcpy(c.fpu.fpr[0], "\x00\x00\x00\x00\x00\x00\x00\x80\xff\x3f", 10); /* valid */
	/* fpr[1] all zero: zero */
	memcpy(c.fpu.fpr[2], "\x00\x00\x00\x00\x00\x00\x00\x80\xff\x7f", 10); /* infinity: special */
	memcpy(c.fpu.fpr[3], "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10); /* denormal: special */
	uint8_t g[GDB_G_SIZE];
	gdb_regs_encode(&c, g);
	assert_int_equal(le32(g + 252), 0xff00 | 2 << 6 | 2 << 4 | 1 << 2 | 0);
	/* and back: a non-empty tag is an in-use bit */
	struct gdb_cpu d = sample();
	gdb_regs_decode(&d, g);
	assert_int_equal(d.fpu.ftwx, 0x0f);
}

static void decode_roundtrip(void **state)
{
	(void)state;
	struct gdb_cpu c = sample(), d;
	uint8_t g[GDB_G_SIZE], g2[GDB_G_SIZE];
	gdb_regs_encode(&c, g);
	memset(&d, 0, sizeof(d));
	d.sregs = c.sregs;
	gdb_regs_decode(&d, g);
	assert_memory_equal(&d.regs, &c.regs, sizeof(d.regs));
	gdb_regs_encode(&d, g2);
	assert_memory_equal(g, g2, GDB_G_SIZE);
	/* segment selectors are not taken from a G packet */
	set32(g + 140, 0x08);
	gdb_regs_decode(&d, g);
	assert_int_equal(d.sregs.cs.selector, 0x10);
	/* the upper half of RFLAGS stays zero */
	assert_true(d.regs.rflags == 0x246);
}

static void single_register_writes(void **state)
{
	(void)state;
	struct gdb_cpu c = sample();
	uint8_t v[16];
	set64(v, 0x100000);
	assert_int_equal(gdb_reg_write(&c, GDB_REG_RIP, v, 8), 0);
	assert_true(c.regs.rip == 0x100000);
	assert_int_equal(gdb_reg_write(&c, GDB_REG_RIP, v, 4), -1); /* wrong size */
	assert_int_equal(gdb_reg_write(&c, GDB_NUM_REGS, v, 4), -1);
	set32(v, 0x10);
	assert_int_equal(gdb_reg_write(&c, GDB_REG_CS, v, 4), 0); /* unchanged: fine */
	set32(v, 0x08);
	assert_int_equal(gdb_reg_write(&c, GDB_REG_CS, v, 4), -1);
	assert_int_equal(c.sregs.cs.selector, 0x10);
	set32(v, 0x2b);
	assert_int_equal(gdb_reg_write(&c, GDB_REG_CS + 5, v, 4), 0); /* gs */
	memset(v, 0xab, 16);
	assert_int_equal(gdb_reg_write(&c, 40 + 15, v, 16), 0);
	assert_memory_equal(c.fpu.xmm[15], v, 16);
	set32(v, 0x1f81);
	assert_int_equal(gdb_reg_write(&c, 56, v, 4), 0);
	assert_int_equal(c.fpu.mxcsr, 0x1f81);
	assert_true(c.regs.rax == 0x1111111111111111ULL); /* nothing else moved */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spans),
		cmocka_unit_test(encode_layout),
		cmocka_unit_test(tag_word_kinds),
		cmocka_unit_test(decode_roundtrip),
		cmocka_unit_test(single_register_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
