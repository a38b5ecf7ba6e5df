/* The i8042 keyboard controller model: the sequence Linux's i8042 driver runs to
 * find and set up the controller, the commands atkbd sends to the keyboard, the
 * output buffer and IRQ 1, the CPU reset line, and Ctrl+Alt+Del as the guest
 * reads it with and without the controller's set 2 -> set 1 translation. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>

#include "devices/i8042.h"
#include "snap_test.h"
#include "vmm/vm.h"

#define ACK 0xfa

struct ctx {
	struct i8042 k;
	int irq_calls, irq_level, rises;
	int levels[256];
	int resets;
};

static void record_irq(void *p, int level)
{
	struct ctx *c = p;
	if (c->irq_calls < (int)(sizeof(c->levels) / sizeof(c->levels[0])))
		c->levels[c->irq_calls] = level;
	c->irq_calls++;
	if (level && !c->irq_level)
		c->rises++;
	c->irq_level = level;
}

static void record_reset(void *p)
{
	struct ctx *c = p;
	c->resets++;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	i8042_init(&c->k, record_irq, record_reset, c);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	pthread_mutex_destroy(&c->k.lock);
	free(c);
	return 0;
}

static uint8_t status(struct ctx *c) { return i8042_read_status(&c->k); }

/* What Linux's i8042_wait_read() + i8042_read_data() do: the byte must be there. */
static uint8_t read_byte(struct ctx *c)
{
	assert_true(status(c) & I8042_STR_OBF);
	return i8042_read_data(&c->k);
}

static void expect_empty(struct ctx *c)
{
	assert_int_equal(status(c) & I8042_STR_OBF, 0);
}

/* Reads exactly n bytes and checks them, then that nothing else waits. */
static void expect_bytes(struct ctx *c, const uint8_t *want, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t b = read_byte(c);
		if (b != want[i])
			fail_msg("byte %u: got 0x%02x, want 0x%02x", i, b, want[i]);
	}
	expect_empty(c);
}

#define EXPECT(c, ...)                                                                 \
	do {                                                                           \
		const uint8_t want_[] = {__VA_ARGS__};                                 \
		expect_bytes((c), want_, sizeof(want_));                               \
	} while (0)

/* Linux's __i8042_command(): the command, its parameters once the input buffer
 * is empty, then its answer bytes as each shows up in the output buffer. */
static void command(struct ctx *c, uint8_t cmd, const uint8_t *param, unsigned nparam,
		    uint8_t *answer, unsigned nanswer)
{
	assert_int_equal(status(c) & I8042_STR_IBF, 0);
	i8042_write_command(&c->k, cmd);
	for (unsigned i = 0; i < nparam; i++) {
		assert_int_equal(status(c) & I8042_STR_IBF, 0);
		i8042_write_data(&c->k, param[i]);
	}
	for (unsigned i = 0; i < nanswer; i++)
		answer[i] = read_byte(c);
}

static uint8_t read_ctr(struct ctx *c)
{
	uint8_t ctr;
	command(c, 0x20, NULL, 0, &ctr, 1);
	return ctr;
}

static void write_ctr(struct ctx *c, uint8_t ctr)
{
	command(c, 0x60, &ctr, 1, NULL, 0);
	assert_int_equal(read_ctr(c), ctr);
}

/* Linux's i8042_flush(): read while OBF, giving up after 16 bytes. */
static unsigned flush(struct ctx *c)
{
	unsigned n = 0;
	while (status(c) & I8042_STR_OBF) {
		assert_true(n < 16);
		i8042_read_data(&c->k);
		n++;
	}
	return n;
}

static void kbd(struct ctx *c, uint8_t b) { i8042_write_data(&c->k, b); }

static void power_on_state(void **state)
{
	struct ctx *c = *state;
	uint8_t st = status(c);
	/* Nothing waiting, never busy, system flag, keyboard not locked. */
	assert_int_equal(st, I8042_STR_SYS | I8042_STR_UNLOCKED);
	assert_int_equal(read_ctr(c), I8042_CTR_DEFAULT);
	assert_true(I8042_CTR_DEFAULT & I8042_CTR_KBDINT);
	assert_true(I8042_CTR_DEFAULT & I8042_CTR_XLATE);
	assert_false(I8042_CTR_DEFAULT & I8042_CTR_KBDDIS);
	assert_int_equal(c->resets, 0);
}

/* i8042_platform_init(), i8042_controller_check(), i8042_controller_selftest(),
 * i8042_controller_init(), i8042_setup_kbd() of Linux 6.1, in order. */
static void linux_probe_sequence(void **state)
{
	struct ctx *c = *state;
	uint8_t a20 = 0xdf, ans[2];

	/* A20 through the output port, then the "null command" for SMM firmware:
	 * neither may reset the machine. */
	command(c, 0xd1, &a20, 1, NULL, 0);
	command(c, 0xff, NULL, 0, NULL, 0);
	assert_int_equal(c->resets, 0);
	command(c, 0xd0, NULL, 0, ans, 1);
	assert_int_equal(ans[0], 0xdf);

	assert_int_equal(flush(c), 0); /* a controller is there */

	command(c, 0xaa, NULL, 0, ans, 1);
	assert_int_equal(ans[0], 0x55);

	/* Two equal CTR reads in a row. */
	uint8_t ctr = read_ctr(c);
	assert_int_equal(read_ctr(c), ctr);
	assert_true(status(c) & I8042_STR_UNLOCKED); /* no "Keylock active" */
	assert_true(ctr & I8042_CTR_XLATE);          /* Linux keeps translation on */

	/* Keyboard disabled and its interrupt off while Linux sets up. */
	ctr = (uint8_t)((ctr | I8042_CTR_KBDDIS) & ~I8042_CTR_KBDINT);
	write_ctr(c, ctr);
	assert_int_equal(flush(c), 0);

	command(c, 0xab, NULL, 0, ans, 1);
	assert_int_equal(ans[0], 0x00);

	/* i8042_enable_kbd_port() */
	ctr = (uint8_t)((ctr & ~I8042_CTR_KBDDIS) | I8042_CTR_KBDINT);
	write_ctr(c, ctr);
	expect_empty(c);
	assert_int_equal(c->resets, 0);
	assert_false(c->irq_level);
}

/* atkbd_probe(), atkbd_reset_state() and atkbd_activate(), with translation on:
 * every answer arrives through IRQ 1, one rising edge per byte. */
static void atkbd_probe_translated(void **state)
{
	struct ctx *c = *state;
	int rises = c->rises;
	kbd(c, 0xf2);
	assert_true(c->irq_level);
	/* The controller translates the ID's 0x83 to 0x41. */
	EXPECT(c, ACK, 0xab, 0x41);
	assert_int_equal(c->rises - rises, 3);
	assert_false(c->irq_level);

	kbd(c, 0xf5); /* deactivate */
	EXPECT(c, ACK);
	kbd(c, 0xed); /* LEDs off */
	EXPECT(c, ACK);
	kbd(c, 0x00);
	EXPECT(c, ACK);
	kbd(c, 0xf3); /* fastest typematic rate */
	EXPECT(c, ACK);
	kbd(c, 0x00);
	EXPECT(c, ACK);
	kbd(c, 0xf4); /* activate */
	EXPECT(c, ACK);
	assert_int_equal(c->k.kbd_leds, 0);
	assert_int_equal(c->k.kbd_typematic, 0);
	assert_true(c->k.kbd_scanning);
	assert_int_equal(c->rises - rises, 3 + 6);
}

static void atkbd_probe_untranslated(void **state)
{
	struct ctx *c = *state;
	/* i8042.direct: translation off. */
	write_ctr(c, I8042_CTR_DEFAULT & ~I8042_CTR_XLATE);
	kbd(c, 0xf2);
	EXPECT(c, ACK, 0xab, 0x83);
	kbd(c, 0xf0); /* which scan code set? */
	EXPECT(c, ACK);
	kbd(c, 0x00);
	EXPECT(c, ACK, 0x02);
	/* Translated, the set number reads like a set 2 key code would. */
	write_ctr(c, I8042_CTR_DEFAULT);
	kbd(c, 0xf0);
	kbd(c, 0x00);
	EXPECT(c, ACK, ACK, 0x41);
}

static void keyboard_commands(void **state)
{
	struct ctx *c = *state;
	kbd(c, 0xff); /* reset: ACK, then the self-test passed */
	EXPECT(c, ACK, 0xaa);
	kbd(c, 0xee); /* echo: no ACK */
	EXPECT(c, 0xee);
	kbd(c, 0xf6); /* defaults */
	EXPECT(c, ACK);
	kbd(c, 0x42); /* not a command */
	EXPECT(c, 0xfe);
	kbd(c, 0xf4);
	EXPECT(c, ACK);
	kbd(c, 0xfe); /* resend: the last byte again */
	EXPECT(c, ACK);

	/* Scan code sets 1 and 2 are offered, 3 is not. */
	kbd(c, 0xf0);
	kbd(c, 0x01);
	EXPECT(c, ACK, ACK);
	assert_int_equal(c->k.kbd_set, 1);
	kbd(c, 0xf0);
	kbd(c, 0x03);
	EXPECT(c, ACK, 0xfe);
	assert_int_equal(c->k.kbd_set, 1);
	kbd(c, 0xff); /* reset brings back set 2 */
	EXPECT(c, ACK, 0xaa);
	assert_int_equal(c->k.kbd_set, 2);

	/* A command where an argument was expected starts that command. */
	kbd(c, 0xed);
	kbd(c, 0xf2);
	EXPECT(c, ACK, ACK, 0xab, 0x41);
	kbd(c, 0x05); /* no longer an argument */
	EXPECT(c, 0xfe);
	assert_int_equal(c->k.kbd_leds, 0);

	kbd(c, 0xed);
	kbd(c, 0x07);
	EXPECT(c, ACK, ACK);
	assert_int_equal(c->k.kbd_leds, 7);
	kbd(c, 0xf5); /* disable resets to defaults */
	EXPECT(c, ACK);
	assert_int_equal(c->k.kbd_leds, 0);
	assert_false(c->k.kbd_scanning);
	kbd(c, 0xff);
	EXPECT(c, ACK, 0xaa);
	assert_true(c->k.kbd_scanning);
}

static void controller_commands(void **state)
{
	struct ctx *c = *state;
	uint8_t ans[1], b;

	/* Status bit 3: where the last write went. */
	i8042_write_command(&c->k, 0xae);
	assert_true(status(c) & I8042_STR_CMD);
	kbd(c, 0xf4);
	assert_false(status(c) & I8042_STR_CMD);
	EXPECT(c, ACK);

	/* Keyboard interface off and on. */
	command(c, 0xad, NULL, 0, NULL, 0);
	assert_true(read_ctr(c) & I8042_CTR_KBDDIS);
	command(c, 0xae, NULL, 0, NULL, 0);
	assert_false(read_ctr(c) & I8042_CTR_KBDDIS);

	/* Aux port: the CTR bit follows, but its test fails (nothing there). */
	command(c, 0xa8, NULL, 0, NULL, 0);
	assert_false(read_ctr(c) & I8042_CTR_AUXDIS);
	command(c, 0xa7, NULL, 0, NULL, 0);
	assert_true(read_ctr(c) & I8042_CTR_AUXDIS);
	command(c, 0xa9, NULL, 0, ans, 1);
	assert_int_not_equal(ans[0], 0x00);
	/* Bytes for the aux port go nowhere and are not keyboard commands. */
	b = 0xf5;
	command(c, 0xd4, &b, 1, NULL, 0);
	command(c, 0xd3, &b, 1, NULL, 0);
	expect_empty(c);
	assert_true(c->k.kbd_scanning);

	/* 0xD2: the next byte reads back as if the keyboard sent it, untranslated. */
	b = 0x83;
	command(c, 0xd2, &b, 1, ans, 1);
	assert_int_equal(ans[0], 0x83);

	/* CTR bit 7 is reserved. */
	b = 0xff;
	command(c, 0x60, &b, 1, NULL, 0);
	assert_int_equal(read_ctr(c), 0x7f);

	/* A command abandons the previous one's pending byte: this one goes to the keyboard. */
	i8042_write_command(&c->k, 0x60);
	i8042_write_command(&c->k, 0xae);
	kbd(c, 0xee);
	EXPECT(c, 0xee);
	assert_int_equal(read_ctr(c), 0x7f & ~I8042_CTR_KBDDIS);

	/* Unknown commands are ignored. */
	command(c, 0xc0, NULL, 0, NULL, 0);
	command(c, 0x21, NULL, 0, NULL, 0);
	expect_empty(c);
	assert_int_equal(c->resets, 0);
}

static void reset_line(void **state)
{
	struct ctx *c = *state;
	uint8_t b;

	/* Pulses: the lines whose bit is 0; bit 0 is reset. */
	i8042_write_command(&c->k, 0xff);
	i8042_write_command(&c->k, 0xfd);
	assert_int_equal(c->resets, 0);
	i8042_write_command(&c->k, 0xfe);
	assert_int_equal(c->resets, 1);
	i8042_write_command(&c->k, 0xf0);
	assert_int_equal(c->resets, 2);

	/* Output port written with bit 0 clear holds the CPU in reset. */
	b = 0xdd; /* A20 off, not reset */
	command(c, 0xd1, &b, 1, NULL, 0);
	assert_int_equal(c->resets, 2);
	b = 0xfe;
	command(c, 0xd1, &b, 1, NULL, 0);
	assert_int_equal(c->resets, 3);
	b = 0x00;
	command(c, 0xd1, &b, 1, NULL, 0);
	assert_int_equal(c->resets, 4);
	expect_empty(c);
}

/* OBF and IRQ 1: the line is high while a byte waits and the keyboard interrupt
 * is enabled; every read lowers it, and it rises again for the next byte. */
static void output_buffer_and_irq(void **state)
{
	struct ctx *c = *state;
	kbd(c, 0xf2);
	assert_int_equal(c->irq_calls, 1);
	assert_int_equal(c->levels[0], 1);
	assert_int_equal(read_byte(c), ACK);
	assert_int_equal(c->levels[1], 0);
	assert_int_equal(c->levels[2], 1);
	assert_int_equal(read_byte(c), 0xab);
	assert_int_equal(read_byte(c), 0x41);
	assert_int_equal(c->irq_calls, 6);
	assert_int_equal(c->rises, 3);
	assert_false(c->irq_level);
	/* An empty buffer reads the last byte again and raises nothing. */
	assert_int_equal(i8042_read_data(&c->k), 0x41);
	assert_int_equal(c->irq_calls, 6);
	expect_empty(c);

	/* Interrupt off: bytes wait without IRQ; turning it on raises it. */
	uint8_t ctr = I8042_CTR_DEFAULT & ~I8042_CTR_KBDINT;
	command(c, 0x60, &ctr, 1, NULL, 0);
	kbd(c, 0xee);
	assert_true(status(c) & I8042_STR_OBF);
	assert_false(c->irq_level);
	ctr = I8042_CTR_DEFAULT;
	command(c, 0x60, &ctr, 1, NULL, 0);
	assert_true(c->irq_level);
	/* ... and off again lowers it, the byte still waiting. */
	ctr = I8042_CTR_DEFAULT & ~I8042_CTR_KBDINT;
	command(c, 0x60, &ctr, 1, NULL, 0);
	assert_false(c->irq_level);
	EXPECT(c, 0xee);
	assert_false(c->irq_level);

	/* Controller answers go through the same buffer (the CTR read here). */
	assert_int_equal(read_ctr(c), ctr);
}

/* Linux's flush gives up on a controller with more than 16 bytes: the buffer holds 16. */
static void buffer_is_bounded(void **state)
{
	struct ctx *c = *state;
	for (unsigned i = 0; i < 40; i++) {
		uint8_t b = (uint8_t)i;
		command(c, 0xd2, &b, 1, NULL, 0);
	}
	for (unsigned i = 0; i < I8042_QUEUE_SIZE; i++)
		assert_int_equal(read_byte(c), i); /* the oldest kept, the rest dropped */
	expect_empty(c);
}

static void ctrl_alt_del_translated(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), 0);
	assert_true(c->irq_level);
	/* Set 1: Ctrl, Alt, Delete pressed, then released in reverse order. */
	EXPECT(c, 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d);
	assert_int_equal(c->rises, 8);
	assert_false(c->irq_level);
}

static void ctrl_alt_del_set2(void **state)
{
	struct ctx *c = *state;
	write_ctr(c, I8042_CTR_DEFAULT & ~I8042_CTR_XLATE);
	int rises = c->rises;
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), 0);
	/* Set 2: breaks are 0xF0 and the make code, after 0xE0 for Delete. */
	EXPECT(c, 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14);
	assert_int_equal(c->rises - rises, 11);
}

static void ctrl_alt_del_keyboard_in_set1(void **state)
{
	struct ctx *c = *state;
	write_ctr(c, I8042_CTR_DEFAULT & ~I8042_CTR_XLATE);
	kbd(c, 0xf0);
	kbd(c, 0x01);
	EXPECT(c, ACK, ACK);
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), 0);
	EXPECT(c, 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d);
}

static void ctrl_alt_del_refused(void **state)
{
	struct ctx *c = *state;
	/* Keyboard interface disabled by the controller. */
	command(c, 0xad, NULL, 0, NULL, 0);
	errno = 0;
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), -1);
	assert_int_equal(errno, EAGAIN);
	expect_empty(c);
	command(c, 0xae, NULL, 0, NULL, 0);

	/* Scanning disabled in the keyboard. */
	kbd(c, 0xf5);
	EXPECT(c, ACK);
	errno = 0;
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), -1);
	assert_int_equal(errno, EAGAIN);
	expect_empty(c);
	kbd(c, 0xf4);
	EXPECT(c, ACK);

	/* Not enough room for the whole sequence: nothing is queued. */
	for (unsigned i = 0; i < I8042_QUEUE_SIZE - 7; i++)
		kbd(c, 0xee);
	errno = 0;
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(flush(c), I8042_QUEUE_SIZE - 7);
	/* Room for it again. */
	assert_int_equal(i8042_push_ctrl_alt_del(&c->k), 0);
	assert_int_equal(flush(c), 8);
}

static void no_vm_no_keys(void **state)
{
	(void)state;
	errno = 0;
	assert_int_equal(i8042_send_ctrl_alt_del(NULL), -1);
	assert_int_equal(errno, ENODEV);
	/* A VM whose devices were never created has no keyboard. */
	struct vm *other = calloc(1, sizeof(*other));
	assert_non_null(other);
	errno = 0;
	assert_int_equal(i8042_send_ctrl_alt_del(other), -1);
	assert_int_equal(errno, ENODEV);
	free(other);
}

/* The API thread types while a vCPU thread reads: every accepted sequence
 * arrives whole, no byte is lost or duplicated. */
struct race {
	struct ctx *c;
	int accepted;
};

static void *typist(void *p)
{
	struct race *r = p;
	for (int i = 0; i < 2000; i++)
		if (i8042_push_ctrl_alt_del(&r->c->k) == 0)
			r->accepted++;
	return NULL;
}

static void concurrent_typing_and_reading(void **state)
{
	struct ctx *c = *state;
	struct race r = {.c = c};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, typist, &r), 0);
	static const uint8_t seq[8] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
	unsigned got = 0;
	bool done = false;
	while (!done || (status(c) & I8042_STR_OBF)) {
		if (!done && pthread_tryjoin_np(t, NULL) == 0)
			done = true;
		if (status(c) & I8042_STR_OBF) {
			uint8_t b = i8042_read_data(&c->k);
			if (b != seq[got % 8])
				fail_msg("byte %u: got 0x%02x, want 0x%02x", got, b, seq[got % 8]);
			got++;
		}
	}
	assert_true(r.accepted > 0);
	assert_int_equal(got, 8u * (unsigned)r.accepted);
	assert_false(c->irq_level);
}

/* ---- snapshots ---- */

static void save_to(struct ctx *c, struct snap_reader *r)
{
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "KBDC", 0);
	i8042_save(&c->k, &w);
	snapw_end(&w);
	snap_test_reopen(&w, r);
}

static int restore_from(struct ctx *c, const struct snap_reader *r, struct kite_err *err)
{
	struct snap_cursor cur;
	assert_true(snapr_find(r, "KBDC", 0, &cur));
	return i8042_restore(&c->k, &cur, err);
}

/* The command byte Linux wrote, an untranslated keyboard in set 1, a command
 * waiting for its argument and bytes the guest has not read survive into a
 * fresh controller, which raises IRQ 1 for them. */
static void snapshot_round_trip(void **state)
{
	struct ctx *c = *state;
	write_ctr(c, I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_AUXDIS); /* translation off */
	kbd(c, 0xf0);
	assert_int_equal(read_byte(c), ACK);
	kbd(c, 0x01); /* scan code set 1 */
	assert_int_equal(read_byte(c), ACK);
	kbd(c, 0xf2); /* identify: three bytes wait */
	kbd(c, 0xed); /* LEDs: ACK, then the argument is pending */
	struct snap_reader r;
	save_to(c, &r);

	struct ctx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	i8042_init(&f->k, record_irq, record_reset, f);
	struct kite_err err = {0};
	assert_int_equal(restore_from(f, &r, &err), 0);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(read_byte(f), ACK);
	assert_int_equal(read_byte(f), 0xab);
	assert_int_equal(read_byte(f), 0x83); /* untranslated */
	assert_int_equal(read_byte(f), ACK);
	expect_empty(f);
	i8042_write_data(&f->k, 0x02); /* the pending LED argument */
	assert_int_equal(read_byte(f), ACK);
	assert_int_equal(f->k.kbd_leds, 0x02);
	i8042_write_command(&f->k, 0x20); /* read the command byte */
	assert_int_equal(read_byte(f), I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_AUXDIS);
	assert_int_equal(f->k.kbd_set, 1);
	pthread_mutex_destroy(&f->k.lock);
	free(f);
	snapr_free(&r);
}

static void snapshot_refusals(void **state)
{
	struct ctx *c = *state;
	static const struct { size_t off; uint8_t v; } patches[] = {
		{0, 0xc5},  /* command byte bit 7 */
		{3, 0x20},  /* a controller command that takes no argument */
		{4, 0xf4},  /* a keyboard command that takes no argument */
		{5, 3},     /* scan code set 3 */
		{7, 0x08},  /* LEDs */
		{8, 0x80},  /* typematic */
		{6, 2},     /* scanning flag */
		{11, 17},   /* queue longer than the buffer */
	};
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		struct snap_reader bad;
		size_t len;
		save_to(c, &bad);
		uint8_t *p = snap_test_payload(&bad, "KBDC", 0, &len);
		p[patches[i].off] = patches[i].v;
		struct ctx *f = calloc(1, sizeof(*f));
		assert_non_null(f);
		i8042_init(&f->k, record_irq, record_reset, f);
		struct kite_err err = {0};
		assert_int_equal(restore_from(f, &bad, &err), -1);
		assert_image_err(&err);
		assert_int_equal(f->k.ctr, I8042_CTR_DEFAULT); /* untouched */
		pthread_mutex_destroy(&f->k.lock);
		free(f);
		snapr_free(&bad);
	}
	struct snap_reader r, bad;
	save_to(c, &r);
	for (long cut = -1; cut <= 1; cut += 2) {
		snap_test_resize(&r, "KBDC", 0, cut, &bad);
		struct ctx *f = calloc(1, sizeof(*f));
		assert_non_null(f);
		i8042_init(&f->k, record_irq, record_reset, f);
		struct kite_err err = {0};
		assert_int_equal(restore_from(f, &bad, &err), -1);
		assert_image_err(&err);
		pthread_mutex_destroy(&f->k.lock);
		free(f);
		snapr_free(&bad);
	}
	snapr_free(&r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(power_on_state),
		T(linux_probe_sequence),
		T(atkbd_probe_translated),
		T(atkbd_probe_untranslated),
		T(keyboard_commands),
		T(controller_commands),
		T(reset_line),
		T(output_buffer_and_irq),
		T(buffer_is_bounded),
		T(ctrl_alt_del_translated),
		T(ctrl_alt_del_set2),
		T(ctrl_alt_del_keyboard_in_set1),
		T(ctrl_alt_del_refused),
		T(no_vm_no_keys),
		T(concurrent_typing_and_reading),
		T(snapshot_round_trip),
		T(snapshot_refusals),
	};
	return cmocka_run_group_tests_name("i8042", tests, NULL, NULL);
}
