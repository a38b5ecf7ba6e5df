/* PCI configuration mechanism #1 on ports 0xCF8-0xCFF: the address latch, the
 * host bridge's identity, what an absent or disabled target reads as, which
 * bits the guest may change, and the 0xCF9 reset control. */
#include "unit.h"

#include <stdlib.h>

#include "arch/x86/layout.h"
#include "devices/pci.h"
#include "snap_test.h"

#define ENABLE 0x80000000u

struct ctx {
	struct pci_bus b;
	int resets;
	void *reset_ctx;
};

static void on_reset(void *ctx)
{
	struct ctx *c = ctx;
	c->resets++;
	c->reset_ctx = ctx;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	pci_bus_init(&c->b);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static uint32_t io_in(struct ctx *c, unsigned off, unsigned size)
{
	uint8_t d[4] = {0};
	pci_io_read(&c->b, off, d, size);
	uint32_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)d[i] << (8 * i);
	return v;
}

static void io_out(struct ctx *c, unsigned off, unsigned size, uint32_t v)
{
	uint8_t d[4];
	set32(d, v);
	pci_io_write(&c->b, off, d, size);
}

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return ENABLE | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

/* Config read the way Linux's pci_conf1_read does it. */
static uint32_t cfg_read(struct ctx *c, unsigned slot, unsigned reg, unsigned size)
{
	io_out(c, 0, 4, cfg_addr(0, slot, 0, reg));
	return io_in(c, 4 + (reg & 3), size);
}

static void cfg_write(struct ctx *c, unsigned slot, unsigned reg, unsigned size, uint32_t v)
{
	io_out(c, 0, 4, cfg_addr(0, slot, 0, reg));
	io_out(c, 4 + (reg & 3), size, v);
}

static void address_latch(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(io_in(c, 0, 4), 0);
	io_out(c, 0, 4, 0x80001234u);
	assert_int_equal(io_in(c, 0, 4), 0x80001234u);
	/* Linux's type-1 probe writes the enable bit and reads it back. */
	io_out(c, 0, 4, ENABLE);
	assert_int_equal(io_in(c, 0, 4), ENABLE);
	/* Only a 4-byte access at 0xCF8 touches the latch. */
	io_out(c, 0, 1, 0x00);
	io_out(c, 0, 2, 0x0000);
	io_out(c, 2, 2, 0x0000);
	io_out(c, 3, 1, 0x00);
	assert_int_equal(io_in(c, 0, 4), ENABLE);
	/* ... and narrower reads of it see nothing. */
	assert_int_equal(io_in(c, 0, 1), 0xff);
	assert_int_equal(io_in(c, 0, 2), 0xffff);
	assert_int_equal(io_in(c, 2, 2), 0xffff);
	assert_int_equal(io_in(c, 3, 1), 0xff);
}

static void host_bridge_identity(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(cfg_read(c, 0, 0x00, 4), 0x00081b36u);
	assert_int_equal(cfg_read(c, 0, 0x00, 2), 0x1b36);
	assert_int_equal(cfg_read(c, 0, 0x02, 2), 0x0008);
	assert_int_equal(cfg_read(c, 0, 0x08, 4) >> 16, 0x0600); /* class: host bridge */
	/* Linux's pci_sanity_check() reads the class as a word at 0x0a. */
	assert_int_equal(cfg_read(c, 0, 0x0a, 2), 0x0600);
	assert_int_equal(cfg_read(c, 0, 0x0b, 1), 0x06);
	assert_int_equal(cfg_read(c, 0, 0x0a, 1), 0x00);
	assert_int_equal(cfg_read(c, 0, 0x0e, 1) & 0x7f, 0); /* header type 0 */
	/* Byte reads at every lane agree with the dword. */
	uint32_t id = cfg_read(c, 0, 0x00, 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(cfg_read(c, 0, i, 1), (id >> (8 * i)) & 0xff);
}

static void absent_targets_read_all_ones(void **state)
{
	struct ctx *c = *state;
	for (unsigned slot = 1; slot < PCI_SLOTS; slot++)
		assert_int_equal(cfg_read(c, slot, 0, 4), 0xffffffffu);
	/* Function 1 of the host bridge, and bus 1, do not exist. */
	io_out(c, 0, 4, cfg_addr(0, 0, 1, 0));
	assert_int_equal(io_in(c, 4, 4), 0xffffffffu);
	io_out(c, 0, 4, cfg_addr(1, 0, 0, 0));
	assert_int_equal(io_in(c, 4, 4), 0xffffffffu);
	io_out(c, 0, 4, cfg_addr(255, 31, 7, 0xfc));
	assert_int_equal(io_in(c, 4, 2), 0xffff);
	/* Writes there go nowhere and break nothing. */
	io_out(c, 0, 4, cfg_addr(1, 0, 0, 0x04));
	io_out(c, 4, 4, 0xffffffffu);
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0);
}

static void enable_bit_clear(void **state)
{
	struct ctx *c = *state;
	io_out(c, 0, 4, cfg_addr(0, 0, 0, 0) & ~ENABLE);
	assert_int_equal(io_in(c, 4, 4), 0xffffffffu);
	assert_int_equal(io_in(c, 6, 2), 0xffff);
	io_out(c, 0, 4, cfg_addr(0, 0, 0, 0x04) & ~ENABLE);
	io_out(c, 4, 2, 0x0006);
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0);
}

static void read_only_fields(void **state)
{
	struct ctx *c = *state;
	cfg_write(c, 0, 0x00, 4, 0xffffffffu);
	cfg_write(c, 0, 0x08, 4, 0x12345678u);
	cfg_write(c, 0, 0x0e, 1, 0x80);
	cfg_write(c, 0, 0x10, 4, 0xffffffffu); /* no BARs on the bridge */
	cfg_write(c, 0, 0x3c, 1, 0x0b);
	assert_int_equal(cfg_read(c, 0, 0x00, 4), 0x00081b36u);
	assert_int_equal(cfg_read(c, 0, 0x08, 4), 0x06000000u);
	assert_int_equal(cfg_read(c, 0, 0x0e, 1), 0);
	assert_int_equal(cfg_read(c, 0, 0x10, 4), 0);
	assert_int_equal(cfg_read(c, 0, 0x3c, 1), 0);
	/* Status (0x06) is not writable either. */
	cfg_write(c, 0, 0x04, 4, 0xffffffffu);
	assert_int_equal(cfg_read(c, 0, 0x06, 2), 0);
}

static void command_register_writable_bits(void **state)
{
	struct ctx *c = *state;
	cfg_write(c, 0, 0x04, 2, 0xffff);
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0x0006); /* memory, bus master */
	cfg_write(c, 0, 0x04, 2, 0x0000);
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0);
	cfg_write(c, 0, 0x04, 1, 0x07);
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0x0006);
	cfg_write(c, 0, 0x05, 1, 0xff); /* high byte: nothing writable */
	assert_int_equal(cfg_read(c, 0, 0x04, 2), 0x0006);
	cfg_write(c, 0, 0x04, 4, 0x00000004u);
	assert_int_equal(cfg_read(c, 0, 0x04, 4), 0x00000004u);
}

static void accesses_past_config_space(void **state)
{
	struct ctx *c = *state;
	/* Register 0xFC through 0xCFF: a 4-byte access from 0xCFD would run past
	 * the 256-byte space; it reads all-ones and writes nothing. */
	struct pci_dev d;
	memset(&d, 0, sizeof(d));
	memset(d.wmask, 0xff, sizeof(d.wmask));
	int slot = pci_bus_add(&c->b, &d);
	assert_int_equal(slot, 1);
	io_out(c, 0, 4, cfg_addr(0, 1, 0, 0xfc));
	for (unsigned off = 5; off < 8; off++) {
		assert_int_equal(io_in(c, off, 4), 0xffffffffu);
		io_out(c, off, 4, 0x11223344u);
	}
	io_out(c, 6, 2, 0xabcd); /* fits: bytes 0xFE, 0xFF */
	assert_int_equal(io_in(c, 6, 2), 0xabcd);
	assert_int_equal(d.cfg[0xfd], 0);
	assert_int_equal(d.cfg[0xfe], 0xcd);
	assert_int_equal(d.cfg[0xff], 0xab);
	assert_int_equal(io_in(c, 7, 1), 0xab);
}

static void reset_control(void **state)
{
	struct ctx *c = *state;
	/* Without a hook, a reset request is ignored. */
	io_out(c, 1, 1, 0x06);
	c->b.reset = on_reset;
	c->b.reset_ctx = c;
	io_out(c, 1, 1, 0x02); /* Linux's `reboot=p` first writes 0x02 ... */
	assert_int_equal(c->resets, 0);
	io_out(c, 1, 1, 0x06); /* ... then 0x06 */
	assert_int_equal(c->resets, 1);
	assert_ptr_equal(c->reset_ctx, c);
	io_out(c, 1, 1, 0x04);
	assert_int_equal(c->resets, 2);
	io_out(c, 1, 1, 0xfb);
	assert_int_equal(c->resets, 2);
	/* Only a byte write to 0xCF9 is the reset register. */
	io_out(c, 1, 2, 0x0404);
	io_out(c, 0, 1, 0x04);
	io_out(c, 2, 1, 0x04);
	assert_int_equal(c->resets, 2);
	/* A 4-byte latch write with bit 2 of its second byte set is not a reset. */
	io_out(c, 0, 4, 0x80000400u);
	assert_int_equal(c->resets, 2);
}

struct hook_log {
	int calls;
	unsigned off, size;
	uint32_t value;
};

static struct hook_log hook;

static void record_cfg_write(struct pci_dev *d, unsigned off, uint32_t value, unsigned size)
{
	(void)d;
	hook.calls++;
	hook.off = off;
	hook.value = value;
	hook.size = size;
}

static const struct pci_dev_ops hook_ops = {.cfg_write = record_cfg_write};

static void added_device_and_hook(void **state)
{
	struct ctx *c = *state;
	struct pci_dev d;
	memset(&d, 0, sizeof(d));
	set16(d.cfg + 0x00, 0x1af4);
	set16(d.cfg + 0x02, 0x1041);
	set32(d.wmask + 0x10, 0xfffff000u); /* a 4 KiB memory BAR */
	d.ops = &hook_ops;
	memset(&hook, 0, sizeof(hook));
	int slot = pci_bus_add(&c->b, &d);
	assert_int_equal(slot, 1);
	assert_int_equal(cfg_read(c, 1, 0x00, 4), 0x10411af4u);

	/* BAR sizing: write all-ones, read back the size mask. */
	cfg_write(c, 1, 0x10, 4, 0xffffffffu);
	assert_int_equal(cfg_read(c, 1, 0x10, 4), 0xfffff000u);
	assert_int_equal(hook.calls, 1);
	assert_int_equal(hook.off, 0x10);
	assert_int_equal(hook.size, 4);
	assert_int_equal(hook.value, 0xffffffffu); /* the raw value, before the mask */
	cfg_write(c, 1, 0x12, 2, 0xc000);
	assert_int_equal(hook.off, 0x12);
	assert_int_equal(hook.size, 2);
	assert_int_equal(hook.value, 0xc000);
	assert_int_equal(cfg_read(c, 1, 0x10, 4), 0xc000f000u);
	/* Vendor id stays read-only, but the hook still hears of the write. */
	cfg_write(c, 1, 0x00, 2, 0);
	assert_int_equal(cfg_read(c, 1, 0x00, 2), 0x1af4);
	assert_int_equal(hook.calls, 3);
	/* No hook call for accesses that reach no device. */
	cfg_write(c, 2, 0x10, 4, 0);
	assert_int_equal(hook.calls, 3);
}

/* Memory BARs: placed at start-up in the window, aligned to their size,
 * sizable, movable, and found by address only while memory decoding is on. */
static void bars_placed_sized_and_found(void **state)
{
	struct ctx *c = *state;
	struct pci_dev a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.bar_size[0] = 0x8000;
	b.bar_size[0] = 0x1000;
	set16(a.wmask + 0x04, PCI_CMD_MEMORY);
	set16(b.wmask + 0x04, PCI_CMD_MEMORY);
	b.bar_size[2] = 0x10000;
	assert_int_equal(pci_bus_add(&c->b, &a), 1);
	assert_int_equal(pci_bus_add(&c->b, &b), 2);
	assert_int_equal(pci_bar_addr(&a, 0), LAYOUT_PCI_BARS);
	assert_int_equal(pci_bar_addr(&b, 0), LAYOUT_PCI_BARS + 0x8000);
	assert_int_equal(pci_bar_addr(&b, 2), LAYOUT_PCI_BARS + 0x10000); /* aligned up */
	assert_int_equal(pci_bar_addr(&b, 1), 0);

	unsigned bar = 99;
	uint64_t off = 99;
	/* Decoding off: nothing answers. */
	assert_null(pci_bar_find(&c->b, LAYOUT_PCI_BARS + 4, &bar, &off));
	cfg_write(c, 1, 0x04, 2, PCI_CMD_MEMORY);
	cfg_write(c, 2, 0x04, 2, PCI_CMD_MEMORY);
	assert_ptr_equal(pci_bar_find(&c->b, LAYOUT_PCI_BARS + 4, &bar, &off), &a);
	assert_int_equal(bar, 0);
	assert_int_equal(off, 4);
	assert_ptr_equal(pci_bar_find(&c->b, LAYOUT_PCI_BARS + 0x10fff, &bar, &off), &b);
	assert_int_equal(bar, 2);
	assert_int_equal(off, 0xfff);
	assert_null(pci_bar_find(&c->b, LAYOUT_PCI_BARS + 0x9000, &bar, &off)); /* the gap */

	/* Sizing, then a move: the old address goes quiet, the new one answers. */
	cfg_write(c, 1, 0x10, 4, 0xffffffffu);
	assert_int_equal(cfg_read(c, 1, 0x10, 4), 0xffff8000u);
	cfg_write(c, 1, 0x10, 4, 0xd0000000u);
	assert_null(pci_bar_find(&c->b, LAYOUT_PCI_BARS, &bar, &off));
	assert_ptr_equal(pci_bar_find(&c->b, 0xd0007ffcu, &bar, &off), &a);
	assert_int_equal(off, 0x7ffc);
}

static void bars_that_do_not_fit_are_refused(void **state)
{
	struct ctx *c = *state;
	struct pci_dev big;
	memset(&big, 0, sizeof(big));
	big.bar_size[0] = 0x80000000u; /* 2 GiB: more than the window */
	assert_int_equal(pci_bus_add(&c->b, &big), -1);
	assert_null(c->b.slot[1]);
}

static void slots_fill_then_fail(void **state)
{
	struct ctx *c = *state;
	struct pci_dev *devs = calloc(PCI_SLOTS, sizeof(*devs));
	assert_non_null(devs);
	for (int i = 1; i < PCI_SLOTS; i++) {
		set16(devs[i].cfg, (uint16_t)(0x1000 + i));
		assert_int_equal(pci_bus_add(&c->b, &devs[i]), i);
	}
	assert_int_equal(pci_bus_add(&c->b, &devs[0]), -1);
	assert_ptr_equal(c->b.slot[0], &c->b.host_bridge);
	for (unsigned i = 1; i < PCI_SLOTS; i++)
		assert_int_equal(cfg_read(c, i, 0, 2), 0x1000 + i);
	assert_int_equal(cfg_read(c, 0, 0, 2), 0x1b36);
	free(devs);
}

/* ---- snapshots ---- */

static void save_to(struct ctx *c, struct snap_reader *r)
{
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "PCIB", 0);
	pci_bus_save(&c->b, &w);
	snapw_end(&w);
	snap_test_reopen(&w, r);
}

static int restore_into(struct pci_bus *b, const struct snap_reader *r, struct kite_err *err)
{
	struct snap_cursor cur;
	assert_true(snapr_find(r, "PCIB", 0, &cur));
	return pci_bus_restore(b, &cur, err);
}

/* The latch the guest left (mid config access) and the host bridge's command
 * register come back on a fresh bus. */
static void snapshot_round_trip(void **state)
{
	struct ctx *c = *state;
	cfg_write(c, 0, 0x04, 2, 0x0006);
	io_out(c, 0, 4, cfg_addr(0, 3, 0, 0x10)); /* left latched */
	struct snap_reader r;
	save_to(c, &r);
	struct ctx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	pci_bus_init(&f->b);
	struct kite_err err = {0};
	assert_int_equal(restore_into(&f->b, &r, &err), 0);
	assert_int_equal(io_in(f, 0, 4), cfg_addr(0, 3, 0, 0x10));
	assert_int_equal(cfg_read(f, 0, 0x04, 2), 0x0006);
	assert_int_equal(cfg_read(f, 0, 0x00, 4), cfg_read(c, 0, 0x00, 4));
	free(f);
	snapr_free(&r);
}

/* A read-only byte that differs (another bridge), or a section of the wrong
 * length: refused, the bus untouched. */
static void snapshot_refusals(void **state)
{
	struct ctx *c = *state;
	io_out(c, 0, 4, 0x80001234u);
	struct snap_reader r, bad;
	save_to(c, &r);
	size_t len;
	save_to(c, &bad);
	uint8_t *p = snap_test_payload(&bad, "PCIB", 0, &len);
	assert_int_equal(len, 4 + PCI_CFG_SIZE);
	p[4 + 0x02] ^= 1; /* device id */
	struct ctx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	pci_bus_init(&f->b);
	struct kite_err err = {0};
	assert_int_equal(restore_into(&f->b, &bad, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "0x02"));
	assert_int_equal(f->b.addr, 0);
	snapr_free(&bad);
	for (long cut = -1; cut <= 1; cut += 2) {
		snap_test_resize(&r, "PCIB", 0, cut, &bad);
		err = (struct kite_err){0};
		assert_int_equal(restore_into(&f->b, &bad, &err), -1);
		assert_image_err(&err);
		assert_int_equal(f->b.addr, 0);
		snapr_free(&bad);
	}
	free(f);
	snapr_free(&r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(address_latch),
		T(host_bridge_identity),
		T(absent_targets_read_all_ones),
		T(enable_bit_clear),
		T(read_only_fields),
		T(command_register_writable_bits),
		T(accesses_past_config_space),
		T(reset_control),
		T(added_device_and_hook),
		T(slots_fill_then_fail),
		T(bars_placed_sized_and_found),
		T(bars_that_do_not_fit_are_refused),
		T(snapshot_round_trip),
		T(snapshot_refusals),
	};
	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
