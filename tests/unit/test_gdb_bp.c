/* The debugger's breakpoint bookkeeping: INT3s planted in fake guest RAM and
 * hidden from reads, debug registers shared out and encoded in DR7, and which
 * debug exits are the debugger's (the rest are reinjected into the guest). */
#include "unit.h"

#include "gdb/bp.h"

#define RAM (1u << 20)

static struct gmem mem;
static uint8_t *ram;
static struct gdb_bps b;

static int setup(void **state)
{
	(void)state;
	gdb_bps_init(&b);
	if (test_ram_init(&mem, &ram, RAM, 0, RAM) < 0)
		return -1;
	for (unsigned i = 0; i < RAM; i++)
		ram[i] = (uint8_t)(i * 7 + 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_ram_free(&mem, ram);
	return 0;
}

static struct kvm_debug_exit_arch bp_exit(uint64_t pc)
{
	return (struct kvm_debug_exit_arch){.exception = 3, .pc = pc};
}

static struct kvm_debug_exit_arch db_exit(uint64_t pc, uint64_t dr6)
{
	return (struct kvm_debug_exit_arch){.exception = 1, .pc = pc, .dr6 = dr6 | 0xffff0ff0};
}

static void plant_and_unplant(void **state)
{
	(void)state;
	uint8_t orig = ram[0x1234];
	assert_int_equal(gdb_bps_plant(&b, &mem, 0xffffffff81001234ULL, 0x1234), 0);
	assert_int_equal(ram[0x1234], 0xcc);
	assert_true(gdb_bps_has_sw(&b, 0xffffffff81001234ULL));
	assert_false(gdb_bps_has_sw(&b, 0x1234)); /* keyed by the virtual address */
	/* again: no second entry, the saved byte is still the guest's */
	assert_int_equal(gdb_bps_plant(&b, &mem, 0xffffffff81001234ULL, 0x1234), 0);
	assert_int_equal(b.nr_sw, 1);
	gdb_bps_unplant(&b, &mem, 0xffffffff81001234ULL);
	assert_int_equal(ram[0x1234], orig);
	assert_int_equal(b.nr_sw, 0);
	gdb_bps_unplant(&b, &mem, 0xffffffff81001234ULL); /* none: fine */
}

static void plant_outside_ram_or_full(void **state)
{
	(void)state;
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x1000, RAM), -1);
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x1000, 0xfee00000ULL), -1);
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x1000, UINT64_MAX), -1);
	assert_int_equal(b.nr_sw, 0);
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		assert_int_equal(gdb_bps_plant(&b, &mem, 0x10000 + i, 0x10000 + i), 0);
	uint8_t before = ram[0x20000];
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x20000, 0x20000), -1);
	assert_int_equal(ram[0x20000], before);
	gdb_bps_unplant_all(&b, &mem);
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		assert_int_equal(ram[0x10000 + i], (uint8_t)((0x10000 + i) * 7 + 1));
}

static void guest_rewrote_the_int3(void **state)
{
	(void)state;
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x500, 0x500), 0);
	ram[0x500] = 0x90; /* the guest patched its code over our INT3 */
	gdb_bps_unplant(&b, &mem, 0x500);
	assert_int_equal(ram[0x500], 0x90); /* its byte stays */
}

static void reads_see_the_original_bytes(void **state)
{
	(void)state;
	uint8_t want[16];
	memcpy(want, ram + 0x800, 16);
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x803, 0x803), 0);
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x80f, 0x80f), 0);
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x810, 0x810), 0); /* just past the range */
	uint8_t buf[16];
	memcpy(buf, ram + 0x800, 16);
	assert_int_equal(buf[3], 0xcc);
	gdb_bps_hide(&b, 0x800, buf, 16);
	assert_memory_equal(buf, want, 16);
	/* a read that starts right after one */
	uint8_t one = ram[0x811];
	gdb_bps_hide(&b, 0x811, &one, 1);
	assert_int_equal(one, ram[0x811]);
}

static void writes_keep_breakpoints_planted(void **state)
{
	(void)state;
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x900, 0x900), 0);
	memset(ram + 0x8ff, 0x55, 3); /* the debugger writes over it */
	gdb_bps_rewrite(&b, &mem, 0x8ff, 3);
	assert_int_equal(ram[0x900], 0xcc);
	assert_int_equal(ram[0x8ff], 0x55);
	uint8_t buf[3];
	memcpy(buf, ram + 0x8ff, 3);
	gdb_bps_hide(&b, 0x8ff, buf, 3);
	assert_memory_equal(buf, "\x55\x55\x55", 3);
	gdb_bps_unplant(&b, &mem, 0x900);
	assert_int_equal(ram[0x900], 0x55);
	/* a write elsewhere leaves it alone */
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x900, 0x900), 0);
	gdb_bps_rewrite(&b, &mem, 0x901, 4);
	gdb_bps_unplant(&b, &mem, 0x900);
	assert_int_equal(ram[0x900], 0x55);
}

static void debug_registers(void **state)
{
	(void)state;
	/* an instruction breakpoint: R/W 00, length 00, G0 */
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x100000, 1), 0);
	assert_true(b.dr[0] == 0x100000);
	assert_true(b.dr7 == 0x2);
	/* a 4-byte write watchpoint: G1, R/W 01, LEN 11 */
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x200000, 4), 0);
	assert_true(b.dr[1] == 0x200000);
	assert_true(b.dr7 == (0x2 | 0x8 | (0x1ULL << 20) | (0x3ULL << 22)));
	/* an 8-byte access watchpoint: G2, R/W 11, LEN 10 */
	assert_int_equal(gdb_bps_hw_insert(&b, '4', 0x300008, 8), 0);
	assert_true((b.dr7 >> 24 & 0xf) == 0xb);
	/* a read watchpoint is read/write on x86 (LEN 1 byte: 00) */
	assert_int_equal(gdb_bps_hw_insert(&b, '3', 0x400001, 1), 0);
	assert_true((b.dr7 >> 28 & 0xf) == 0x3);
	assert_true((b.dr7 & 0xff) == 0xaa);
	/* full */
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x500000, 1), -1);
	/* the same request again needs no new register */
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x200000, 4), 0);
	/* removing frees exactly its register and bits */
	gdb_bps_hw_remove(&b, '2', 0x200000, 4);
	assert_true((b.dr7 & 0xff) == 0xa2);
	assert_true((b.dr7 >> 20 & 0xf) == 0);
	assert_int_equal(b.slot_req[1], -1);
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x500000, 1), 0);
	assert_true(b.dr[1] == 0x500000);
	gdb_bps_hw_clear(&b);
	assert_true(b.dr7 == 0);
	for (int i = 0; i < GDB_HW_SLOTS; i++)
		assert_int_equal(b.slot_req[i], -1);
}

static void unaligned_ranges_are_split(void **state)
{
	(void)state;
	/* 3 bytes at ...1: 1 byte at ...1, 2 bytes at ...2 */
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x1001, 3), 0);
	assert_true(b.dr[0] == 0x1001 && b.dr[1] == 0x1002);
	assert_true((b.dr7 >> 16 & 0xf) == 0x1);  /* write, 1 byte */
	assert_true((b.dr7 >> 20 & 0xf) == 0x5);  /* write, 2 bytes */
	assert_int_equal(b.hw[0].slots, 0x3);
	/* 16 aligned bytes: two 8-byte pieces; 32 would need four: no room left */
	assert_int_equal(gdb_bps_hw_insert(&b, '4', 0x2000, 32), -1);
	assert_int_equal(b.slot_req[2], -1); /* a refused request changes nothing */
	assert_int_equal(gdb_bps_hw_insert(&b, '4', 0x2000, 16), 0);
	assert_true(b.dr[2] == 0x2000 && b.dr[3] == 0x2008);
	gdb_bps_hw_remove(&b, '2', 0x1001, 3);
	assert_int_equal(b.slot_req[0], -1);
	assert_int_equal(b.slot_req[1], -1);
	assert_int_equal(b.slot_req[2], 1);
}

static void bad_hw_requests(void **state)
{
	(void)state;
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x1000, 0), -1);
	assert_int_equal(gdb_bps_hw_insert(&b, '2', UINT64_MAX, 2), -1); /* wraps */
	assert_int_equal(gdb_bps_hw_insert(&b, '0', 0x1000, 1), -1);
	assert_int_equal(gdb_bps_hw_insert(&b, '5', 0x1000, 1), -1);
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x1000, UINT64_MAX), -1);
	assert_true(b.dr7 == 0);
	/* an instruction breakpoint ignores gdb's kind */
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x1000, 0), 0);
	gdb_bps_hw_remove(&b, '1', 0x1000, 7);
	assert_true(b.dr7 == 0);
}

static void int3_exits(void **state)
{
	(void)state;
	struct gdb_event ev;
	assert_int_equal(gdb_bps_plant(&b, &mem, 0x1000, 0x1000), 0);
	struct kvm_debug_exit_arch a = bp_exit(0x1000);
	assert_true(gdb_bps_classify(&b, false, &a, &ev));
	assert_int_equal(ev.kind, GDB_STOP_SWBP);
	assert_true(ev.addr == 0x1000);
	/* the guest's own INT3 somewhere else: not ours, to be reinjected */
	a = bp_exit(0x2000);
	assert_false(gdb_bps_classify(&b, false, &a, &ev));
	a = bp_exit(0x1001);
	assert_false(gdb_bps_classify(&b, true, &a, &ev));
	/* a stop at a breakpoint gdb then removed is dropped at the next resume */
	a = bp_exit(0x1000);
	assert_true(gdb_bps_classify(&b, false, &a, &ev));
	assert_true(gdb_bps_still_valid(&b, &ev));
	gdb_bps_unplant(&b, &mem, 0x1000);
	assert_false(gdb_bps_still_valid(&b, &ev));
	/* other vectors are never ours */
	a = (struct kvm_debug_exit_arch){.exception = 6, .pc = 0x1000};
	assert_false(gdb_bps_classify(&b, true, &a, &ev));
}

static void db_exits(void **state)
{
	(void)state;
	struct gdb_event ev;
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x4000, 1), 0);    /* DR0 */
	assert_int_equal(gdb_bps_hw_insert(&b, '2', 0x6001, 3), 0);    /* DR1, DR2 */
	struct kvm_debug_exit_arch a = db_exit(0x4000, 0x1);
	assert_true(gdb_bps_classify(&b, false, &a, &ev));
	assert_int_equal(ev.kind, GDB_STOP_HWBP);
	assert_true(ev.addr == 0x4000);
	/* the second piece of the watched range fired: report its address */
	a = db_exit(0x4100, 0x4);
	assert_true(gdb_bps_classify(&b, false, &a, &ev));
	assert_int_equal(ev.kind, GDB_STOP_WATCH);
	assert_int_equal(ev.type, '2');
	assert_true(ev.addr == 0x6002);
	assert_int_equal(ev.slot, 2);
	assert_true(gdb_bps_still_valid(&b, &ev));
	/* a slot not in use: the guest's own */
	a = db_exit(0x4100, 0x8);
	assert_false(gdb_bps_classify(&b, true, &a, &ev));
	/* a single-step is ours only when we asked for one */
	a = db_exit(0x4100, 1ULL << 14);
	assert_false(gdb_bps_classify(&b, false, &a, &ev));
	assert_true(gdb_bps_classify(&b, true, &a, &ev));
	assert_int_equal(ev.kind, GDB_STOP_STEP);
	assert_false(gdb_bps_still_valid(&b, &ev)); /* a step is never replayed */
	/* a removed watchpoint, or a slot reused for another type, is stale */
	a = db_exit(0x4100, 0x4);
	assert_true(gdb_bps_classify(&b, false, &a, &ev));
	gdb_bps_hw_remove(&b, '2', 0x6001, 3);
	assert_false(gdb_bps_still_valid(&b, &ev));
	assert_int_equal(gdb_bps_hw_insert(&b, '1', 0x7000, 1), 0); /* takes DR1 */
	assert_int_equal(gdb_bps_hw_insert(&b, '4', 0x8000, 1), 0); /* takes DR2 */
	assert_false(gdb_bps_still_valid(&b, &ev));
	ev.slot = 9;
	assert_false(gdb_bps_still_valid(&b, &ev));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(plant_and_unplant),
		T(plant_outside_ram_or_full),
		T(guest_rewrote_the_int3),
		T(reads_see_the_original_bytes),
		T(writes_keep_breakpoints_planted),
		T(debug_registers),
		T(unaligned_ranges_are_split),
		T(bad_hw_requests),
		T(int3_exits),
		T(db_exits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
