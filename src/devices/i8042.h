/* The 8042 keyboard controller with a PS/2 keyboard behind it and nothing on its
 * aux (mouse) port: enough for Linux's i8042 and atkbd drivers to bind, for the
 * VMM to type Ctrl+Alt+Del (Firecracker's SendCtrlAltDel), and for `reboot=k`.
 * The state machine is independent of KVM so it can be unit-tested. */
#ifndef KITE_I8042_H
#define KITE_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* ISA IRQ of the keyboard (ports PORT_I8042_DATA and PORT_I8042_CMD). */
#define I8042_IRQ 1

/* Bytes waiting for the guest at port 0x60. Linux's i8042_flush() gives up on a
 * controller that still has data after 16 reads, so never more than that. */
#define I8042_QUEUE_SIZE 16

/* Status register (port 0x64 read). */
#define I8042_STR_OBF 0x01      /* output buffer full: a byte waits at 0x60 */
#define I8042_STR_IBF 0x02      /* input buffer full: never, writes are taken at once */
#define I8042_STR_SYS 0x04      /* system flag (CTR bit 2) */
#define I8042_STR_CMD 0x08      /* the last write went to 0x64 */
#define I8042_STR_UNLOCKED 0x10 /* keyboard not inhibited by the key lock */
#define I8042_STR_AUXDATA 0x20  /* the byte waiting came from the aux port: never */

/* Controller command byte (CTR), read with 0x20 and written with 0x60. */
#define I8042_CTR_KBDINT 0x01 /* IRQ 1 when a keyboard byte waits */
#define I8042_CTR_AUXINT 0x02
#define I8042_CTR_SYS 0x04
#define I8042_CTR_KBDDIS 0x10 /* keyboard interface disabled (clock inhibited) */
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_XLATE 0x40  /* translate the keyboard's set 2 codes to set 1 */
/* After power-on: keyboard interrupt, system flag, translation; aux disabled. */
#define I8042_CTR_DEFAULT (I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_AUXDIS | I8042_CTR_XLATE)

struct vm;

struct i8042 {
	pthread_mutex_t lock;
	uint8_t ctr;
	uint8_t outport;    /* bit 0: 0 holds the CPU in reset; bit 1: A20 */
	bool last_was_cmd;  /* status bit 3 */
	uint8_t ctl_pending; /* controller command waiting for its byte at 0x60, or 0 */
	/* The keyboard. */
	uint8_t kbd_pending; /* keyboard command waiting for its argument, or 0 */
	uint8_t kbd_set;     /* scan code set: 1 or 2 */
	bool kbd_scanning;   /* sends key codes (0xF4 enable / 0xF5 disable) */
	uint8_t kbd_leds, kbd_typematic;
	uint8_t kbd_last;    /* last byte sent, repeated on 0xFE (resend) */
	/* Output buffer: q[q_head] is what the guest reads next. */
	uint8_t q[I8042_QUEUE_SIZE];
	unsigned q_head, q_len;
	uint8_t last_read;   /* what 0x60 reads with nothing waiting */
	bool irq_level;
	/* Both called with the lock held. set_irq drives ISA IRQ 1; reset pulses
	 * the CPU reset line (0xFE, or 0xD1 with bit 0 clear). */
	void (*set_irq)(void *ctx, int level);
	void (*reset)(void *ctx);
	void *ctx;
};

void i8042_init(struct i8042 *k, void (*set_irq)(void *, int), void (*reset)(void *), void *ctx);
/* Port 0x60 (data) and 0x64 (status / command). */
uint8_t i8042_read_data(struct i8042 *k);
uint8_t i8042_read_status(struct i8042 *k);
void i8042_write_data(struct i8042 *k, uint8_t v);
void i8042_write_command(struct i8042 *k, uint8_t v);
/* Types Ctrl+Alt+Del (all three pressed, then released) in the code set the guest
 * reads: set 1 when the controller translates or the keyboard is in set 1, else
 * set 2. All or nothing. Returns 0, or -1 with errno EAGAIN when the guest has
 * the keyboard disabled (interface or scanning) or ENOSPC when the output buffer
 * lacks room. */
int i8042_push_ctrl_alt_del(struct i8042 *k);

struct snap_writer;
struct snap_cursor;
struct kite_err;
/* Snapshots: controller and keyboard state and the output buffer, into the open
 * section of w / from a section's cursor. restore checks every value and the
 * section's length before it changes anything, then raises IRQ 1 when a byte
 * waits. 0, or -1 with err (KITE_EXIT_IMAGE). */
void i8042_save(struct i8042 *k, struct snap_writer *w);
int i8042_restore(struct i8042 *k, struct snap_cursor *c, struct kite_err *err);

/* The VM's keyboard (the device kite registers at 0x60/0x64): as above, from any
 * thread. errno ENODEV when the VM has no i8042 (not created, or torn down). */
int i8042_send_ctrl_alt_del(struct vm *vm);

#endif
