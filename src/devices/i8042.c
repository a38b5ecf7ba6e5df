/* The 8042 keyboard controller and its PS/2 keyboard: the commands Linux's i8042
 * driver sends to probe and set up the controller, the ones atkbd sends to the
 * keyboard, IRQ 1 for every byte that waits at port 0x60, the CPU reset line, and
 * Ctrl+Alt+Del typed by the VMM. There is no mouse: the DSDT describes only the
 * keyboard (PNP0303), so Linux never probes the aux port. */
#include "devices/i8042.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/device.h"
#include "snapshot/snapfile.h"

/* Controller commands (port 0x64). */
#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE 0xa8
#define CMD_AUX_TEST 0xa9
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE 0xae
#define CMD_READ_OUTPORT 0xd0
#define CMD_WRITE_OUTPORT 0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX 0xd4
#define CMD_PULSE_FIRST 0xf0 /* 0xF0-0xFF pulse the output port lines whose bit is 0 */

#define SELF_TEST_OK 0x55
#define PORT_TEST_OK 0x00
#define PORT_TEST_CLOCK_LOW 0x01 /* the aux port's answer: nothing drives its lines */
#define OUTPORT_RESET 0x01       /* 0 holds the CPU in reset */
#define OUTPORT_DEFAULT 0x03     /* not in reset, A20 on */

/* Keyboard commands (port 0x60) and its answers. */
#define KBD_SET_LEDS 0xed
#define KBD_ECHO 0xee
#define KBD_SCANCODE_SET 0xf0
#define KBD_IDENTIFY 0xf2
#define KBD_TYPEMATIC 0xf3
#define KBD_ENABLE 0xf4
#define KBD_DISABLE 0xf5
#define KBD_DEFAULTS 0xf6
#define KBD_RESEND 0xfe
#define KBD_RESET 0xff
#define KBD_ACK 0xfa
#define KBD_BAT_OK 0xaa
#define KBD_ID_FIRST 0xab
#define KBD_ID_SECOND 0x83 /* an MF2 keyboard */
#define KBD_TYPEMATIC_DEFAULT 0x2b /* 10.9 characters/s after 500 ms */

/* With translation on, the controller turns every byte the keyboard sends into
 * its set 1 counterpart. Replies from 0xFA up pass unchanged; the few small ones
 * kite's keyboard sends are also set 2 key codes, so they change too: the second
 * ID byte 0x83 (F7) reads 0x41, and the scan code set numbers 1, 2, 3 (F9, the
 * unused 0x02, F5) read 0x43, 0x41, 0x3F. */
static uint8_t xlate_reply(const struct i8042 *k, uint8_t b)
{
	if (!(k->ctr & I8042_CTR_XLATE))
		return b;
	switch (b) {
	case 0x83: return 0x41;
	case 0x01: return 0x43;
	case 0x02: return 0x41;
	case 0x03: return 0x3f;
	default: return b;
	}
}

/* The interrupt follows "a byte waits and the keyboard interrupt is enabled";
 * the line only ever changes here, so KVM sees one rising edge per byte. */
static void update_irq(struct i8042 *k)
{
	bool level = k->q_len > 0 && (k->ctr & I8042_CTR_KBDINT);
	if (level != k->irq_level) {
		k->irq_level = level;
		if (k->set_irq)
			k->set_irq(k->ctx, level);
	}
}

static bool queue_room(const struct i8042 *k, unsigned n)
{
	return I8042_QUEUE_SIZE - k->q_len >= n;
}

/* A full buffer drops the byte, as a keyboard overrun would. */
static void queue_put(struct i8042 *k, uint8_t b)
{
	if (!queue_room(k, 1))
		return;
	k->q[(k->q_head + k->q_len) % I8042_QUEUE_SIZE] = b;
	k->q_len++;
}

static void kbd_send(struct i8042 *k, uint8_t b)
{
	k->kbd_last = b;
	queue_put(k, b);
}

static void kbd_defaults(struct i8042 *k)
{
	k->kbd_set = 2;
	k->kbd_leds = 0;
	k->kbd_typematic = KBD_TYPEMATIC_DEFAULT;
	k->kbd_pending = 0;
}

void i8042_init(struct i8042 *k, void (*set_irq)(void *, int), void (*reset)(void *), void *ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->set_irq = set_irq;
	k->reset = reset;
	k->ctx = ctx;
	k->ctr = I8042_CTR_DEFAULT;
	k->outport = OUTPORT_DEFAULT;
	k->kbd_scanning = true;
	kbd_defaults(k);
}

static void cpu_reset(struct i8042 *k)
{
	if (k->reset)
		k->reset(k->ctx);
}

/* The argument of a command that takes one (0xED, 0xF3, 0xF0). */
static void kbd_argument(struct i8042 *k, uint8_t cmd, uint8_t v)
{
	switch (cmd) {
	case KBD_SET_LEDS:
		k->kbd_leds = v & 0x07;
		kbd_send(k, KBD_ACK);
		break;
	case KBD_TYPEMATIC:
		k->kbd_typematic = v & 0x7f;
		kbd_send(k, KBD_ACK);
		break;
	case KBD_SCANCODE_SET:
		if (v == 0) {
			kbd_send(k, KBD_ACK);
			kbd_send(k, xlate_reply(k, k->kbd_set));
		} else if (v == 1 || v == 2) {
			k->kbd_set = v;
			kbd_send(k, KBD_ACK);
		} else {
			kbd_send(k, KBD_RESEND); /* set 3 is not offered */
		}
		break;
	default:
		break;
	}
}

/* A byte written to port 0x60 that is not a controller command's argument goes
 * to the keyboard. Its answers are delivered even while the guest has the
 * keyboard interface disabled: the guest asked for them. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	uint8_t pending = k->kbd_pending;
	k->kbd_pending = 0;
	/* A command byte where an argument was expected starts that command. */
	if (pending && v < KBD_SET_LEDS) {
		kbd_argument(k, pending, v);
		return;
	}
	switch (v) {
	case KBD_SET_LEDS:
	case KBD_TYPEMATIC:
	case KBD_SCANCODE_SET:
		k->kbd_pending = v;
		kbd_send(k, KBD_ACK);
		break;
	case KBD_ECHO:
		kbd_send(k, KBD_ECHO);
		break;
	case KBD_IDENTIFY:
		kbd_send(k, KBD_ACK);
		kbd_send(k, KBD_ID_FIRST);
		kbd_send(k, xlate_reply(k, KBD_ID_SECOND));
		break;
	case KBD_ENABLE:
		k->kbd_scanning = true;
		kbd_send(k, KBD_ACK);
		break;
	case KBD_DISABLE:
		kbd_defaults(k);
		k->kbd_scanning = false;
		kbd_send(k, KBD_ACK);
		break;
	case KBD_DEFAULTS:
		kbd_defaults(k);
		kbd_send(k, KBD_ACK);
		break;
	case KBD_RESEND:
		queue_put(k, k->kbd_last);
		break;
	case KBD_RESET:
		kbd_defaults(k);
		k->kbd_scanning = true;
		kbd_send(k, KBD_ACK);
		kbd_send(k, KBD_BAT_OK);
		break;
	default:
		kbd_send(k, KBD_RESEND);
		break;
	}
}

uint8_t i8042_read_data(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	if (k->q_len) {
		k->last_read = k->q[k->q_head];
		k->q_head = (k->q_head + 1) % I8042_QUEUE_SIZE;
		k->q_len--;
		/* Reading empties the output buffer and drops IRQ 1; the next byte
		 * moving in raises it again, a new edge for the guest. */
		if (k->irq_level) {
			k->irq_level = false;
			if (k->set_irq)
				k->set_irq(k->ctx, 0);
		}
	}
	uint8_t v = k->last_read;
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

uint8_t i8042_read_status(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	uint8_t v = I8042_STR_UNLOCKED;
	if (k->q_len)
		v |= I8042_STR_OBF;
	if (k->ctr & I8042_CTR_SYS)
		v |= I8042_STR_SYS;
	if (k->last_was_cmd)
		v |= I8042_STR_CMD;
	pthread_mutex_unlock(&k->lock);
	return v;
}

void i8042_write_data(struct i8042 *k, uint8_t v)
{
	pthread_mutex_lock(&k->lock);
	k->last_was_cmd = false;
	uint8_t cmd = k->ctl_pending;
	k->ctl_pending = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		k->ctr = v & 0x7f; /* bit 7 is reserved, reads 0 */
		break;
	case CMD_WRITE_OUTPORT:
		k->outport = v;
		if (!(v & OUTPORT_RESET))
			cpu_reset(k);
		break;
	case CMD_WRITE_KBD_OBUF:
		queue_put(k, v); /* as if the keyboard sent it, untranslated */
		break;
	case CMD_WRITE_AUX_OBUF:
	case CMD_WRITE_AUX:
		break; /* no aux port: the byte goes nowhere */
	default:
		kbd_write(k, v);
		break;
	}
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

void i8042_write_command(struct i8042 *k, uint8_t v)
{
	pthread_mutex_lock(&k->lock);
	k->last_was_cmd = true;
	k->ctl_pending = 0; /* a new command abandons one still waiting for its byte */
	switch (v) {
	case CMD_READ_CTR:
		queue_put(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPORT:
	case CMD_WRITE_KBD_OBUF:
	case CMD_WRITE_AUX_OBUF:
	case CMD_WRITE_AUX:
		k->ctl_pending = v;
		break;
	case CMD_AUX_DISABLE:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_ENABLE:
		k->ctr &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_TEST:
		queue_put(k, PORT_TEST_CLOCK_LOW);
		break;
	case CMD_SELF_TEST:
		k->ctr |= I8042_CTR_SYS;
		queue_put(k, SELF_TEST_OK);
		break;
	case CMD_KBD_TEST:
		queue_put(k, PORT_TEST_OK);
		break;
	case CMD_KBD_DISABLE:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case CMD_KBD_ENABLE:
		k->ctr &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case CMD_READ_OUTPORT:
		queue_put(k, k->outport);
		break;
	default:
		/* 0xFE pulses the reset line (`reboot=k`); 0xFF pulses nothing
		 * (Linux sends it as a null command). Others are ignored. */
		if (v >= CMD_PULSE_FIRST && !(v & OUTPORT_RESET))
			cpu_reset(k);
		break;
	}
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

/* A key's codes: set 1 (what a translating controller delivers) and set 2, and
 * whether it is one of the extended keys that send an 0xE0 prefix first. */
struct key {
	uint8_t set1, set2;
	bool extended;
};

static const struct key KEY_LEFT_CTRL = {0x1d, 0x14, false};
static const struct key KEY_LEFT_ALT = {0x38, 0x11, false};
static const struct key KEY_DELETE = {0x53, 0x71, true};

/* Appends a key's make or break code to out; returns the new length. */
static unsigned key_code(const struct key *key, bool make, bool set1, uint8_t *out, unsigned n)
{
	if (key->extended)
		out[n++] = 0xe0;
	if (set1) {
		out[n++] = make ? key->set1 : (uint8_t)(key->set1 | 0x80);
	} else {
		if (!make)
			out[n++] = 0xf0;
		out[n++] = key->set2;
	}
	return n;
}

int i8042_push_ctrl_alt_del(struct i8042 *k)
{
	const struct key *keys[] = {&KEY_LEFT_CTRL, &KEY_LEFT_ALT, &KEY_DELETE};
	uint8_t codes[16];
	int rc = 0;

	pthread_mutex_lock(&k->lock);
	if ((k->ctr & I8042_CTR_KBDDIS) || !k->kbd_scanning) {
		errno = EAGAIN;
		rc = -1;
		goto out;
	}
	bool set1 = (k->ctr & I8042_CTR_XLATE) || k->kbd_set == 1;
	unsigned n = 0;
	for (int i = 0; i < 3; i++)
		n = key_code(keys[i], true, set1, codes, n);
	for (int i = 2; i >= 0; i--)
		n = key_code(keys[i], false, set1, codes, n);
	if (!queue_room(k, n)) {
		errno = ENOSPC;
		rc = -1;
		goto out;
	}
	for (unsigned i = 0; i < n; i++)
		kbd_send(k, codes[i]);
	update_irq(k);
out:
	pthread_mutex_unlock(&k->lock);
	return rc;
}

/* ---- snapshots ----
 * Section "KBDC": ctr outport last_was_cmd ctl_pending kbd_pending kbd_set
 * kbd_scanning kbd_leds kbd_typematic kbd_last last_read (u8 each), u8 q_len,
 * q_len bytes (next read first). The IRQ line is recomputed. */

void i8042_save(struct i8042 *k, struct snap_writer *w)
{
	pthread_mutex_lock(&k->lock);
	const uint8_t f[] = {k->ctr, k->outport, k->last_was_cmd, k->ctl_pending, k->kbd_pending,
			     k->kbd_set, k->kbd_scanning, k->kbd_leds, k->kbd_typematic, k->kbd_last,
			     k->last_read, (uint8_t)k->q_len};
	snapw_bytes(w, f, sizeof(f));
	for (unsigned i = 0; i < k->q_len; i++)
		snapw_u8(w, k->q[(k->q_head + i) % I8042_QUEUE_SIZE]);
	pthread_mutex_unlock(&k->lock);
}

static bool bool_ok(uint8_t v) { return v <= 1; }

int i8042_restore(struct i8042 *k, struct snap_cursor *c, struct kite_err *err)
{
	uint8_t f[12];
	snapc_bytes(c, f, sizeof(f));
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: state section is short");
	uint8_t ctr = f[0], outport = f[1], last_was_cmd = f[2], ctl_pending = f[3];
	uint8_t kbd_pending = f[4], kbd_set = f[5], scanning = f[6], leds = f[7];
	uint8_t typematic = f[8], kbd_last = f[9], last_read = f[10], q_len = f[11];
	if (q_len > I8042_QUEUE_SIZE)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: %u bytes in the output buffer (at most %u)",
			       q_len, I8042_QUEUE_SIZE);
	uint8_t q[I8042_QUEUE_SIZE];
	snapc_bytes(c, q, q_len);
	if (!snapc_done(c))
		return err_set(err, KITE_EXIT_IMAGE, "i8042: state section is %s",
			       c->bad ? "short" : "longer than its fields");
	if (ctr & 0x80)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: command byte 0x%02x has reserved bit 7 set", ctr);
	if (ctl_pending != 0 && ctl_pending != CMD_WRITE_CTR && ctl_pending != CMD_WRITE_OUTPORT &&
	    ctl_pending != CMD_WRITE_KBD_OBUF && ctl_pending != CMD_WRITE_AUX_OBUF &&
	    ctl_pending != CMD_WRITE_AUX)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: pending controller command 0x%02x takes no argument",
			       ctl_pending);
	if (kbd_pending != 0 && kbd_pending != KBD_SET_LEDS && kbd_pending != KBD_TYPEMATIC &&
	    kbd_pending != KBD_SCANCODE_SET)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: pending keyboard command 0x%02x takes no argument",
			       kbd_pending);
	if (kbd_set != 1 && kbd_set != 2)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: keyboard scan code set %u (1 or 2)", kbd_set);
	if (leds & ~0x07u)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: keyboard LEDs 0x%02x has unknown bits", leds);
	if (typematic & 0x80u)
		return err_set(err, KITE_EXIT_IMAGE, "i8042: typematic rate 0x%02x has bit 7 set", typematic);
	if (!bool_ok(last_was_cmd) || !bool_ok(scanning))
		return err_set(err, KITE_EXIT_IMAGE, "i8042: a flag is not 0 or 1 (%u, %u)", last_was_cmd,
			       scanning);

	pthread_mutex_lock(&k->lock);
	k->ctr = ctr;
	k->outport = outport;
	k->last_was_cmd = last_was_cmd;
	k->ctl_pending = ctl_pending;
	k->kbd_pending = kbd_pending;
	k->kbd_set = kbd_set;
	k->kbd_scanning = scanning;
	k->kbd_leds = leds;
	k->kbd_typematic = typematic;
	k->kbd_last = kbd_last;
	k->last_read = last_read;
	memcpy(k->q, q, q_len);
	k->q_head = 0;
	k->q_len = q_len;
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* ---- the VM's i8042 at ports 0x60 and 0x64 ---- */

static struct i8042 kbc;
/* The VM the controller belongs to, NULL when there is none. Guarded by its own
 * lock: the API thread may ask for keys while the VM is created or torn down. */
static struct vm *kbc_vm;
static pthread_mutex_t kbc_vm_lock = PTHREAD_MUTEX_INITIALIZER;

static void kbc_set_irq(void *ctx, int level)
{
	vm_irq_set(ctx, I8042_IRQ, level);
}

static void kbc_reset(void *ctx)
{
	vm_request_stop(ctx, KITE_EXIT_OK, "guest reset (i8042)");
}

/* Each range is one port wide: the bus offset is always 0. */
static void kbc_data_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	(void)off;
	memset(data, 0, size);
	data[0] = i8042_read_data(o);
}

static void kbc_status_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	(void)off;
	memset(data, 0, size);
	data[0] = i8042_read_status(o);
}

static void kbc_data_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)off;
	(void)size;
	i8042_write_data(o, data[0]);
}

static void kbc_cmd_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)off;
	(void)size;
	i8042_write_command(o, data[0]);
}

static const struct bus_ops kbc_data_ops = {.read = kbc_data_read, .write = kbc_data_write};
static const struct bus_ops kbc_cmd_ops = {.read = kbc_status_read, .write = kbc_cmd_write};

static int kbc_create(struct vm *vm, struct kite_err *err)
{
	i8042_init(&kbc, kbc_set_irq, kbc_reset, vm);
	/* 0x60 and 0x64; 0x61 (speaker/PIT gate) is handled in the kernel by KVM's PIT. */
	if (bus_register(&vm->pio, PORT_I8042_DATA, 1, &kbc_data_ops, &kbc, "i8042-data") < 0 ||
	    bus_register(&vm->pio, PORT_I8042_CMD, 1, &kbc_cmd_ops, &kbc, "i8042-cmd") < 0)
		return err_set(err, KITE_EXIT_ERROR, "i8042: port range busy");
	pthread_mutex_lock(&kbc_vm_lock);
	kbc_vm = vm;
	pthread_mutex_unlock(&kbc_vm_lock);
	return 0;
}

static void kbc_destroy(struct vm *vm)
{
	pthread_mutex_lock(&kbc_vm_lock);
	if (kbc_vm == vm)
		kbc_vm = NULL;
	pthread_mutex_unlock(&kbc_vm_lock);
}

int i8042_send_ctrl_alt_del(struct vm *vm)
{
	pthread_mutex_lock(&kbc_vm_lock);
	int rc;
	if (!vm || kbc_vm != vm) {
		errno = ENODEV;
		rc = -1;
	} else {
		rc = i8042_push_ctrl_alt_del(&kbc);
	}
	pthread_mutex_unlock(&kbc_vm_lock);
	return rc;
}

static int kbc_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	(void)vm;
	(void)err;
	snapw_begin(w, "KBDC", 0);
	i8042_save(&kbc, w);
	snapw_end(w);
	return 0;
}

static int kbc_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	(void)vm;
	struct snap_cursor c;
	if (!snapr_find(r, "KBDC", 0, &c))
		return err_set(err, KITE_EXIT_IMAGE, "i8042: the snapshot has no keyboard controller state (section KBDC)");
	return i8042_restore(&kbc, &c, err);
}

KITE_DEVICE(i8042, {.name = "i8042", .create = kbc_create, .destroy = kbc_destroy,
		    .save = kbc_save, .restore = kbc_restore});
