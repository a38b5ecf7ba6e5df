/* 16550A UART state machine, independent of KVM so it can be unit-tested. */
#ifndef KITE_SERIAL_H
#define KITE_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_RX_SIZE 1024

struct serial {
	pthread_mutex_t lock;
	pthread_cond_t rx_space;
	uint8_t ier, lcr, mcr, lsr_extra, msr, scr, dll, dlm, fcr;
	bool thre_pending;
	bool irq_level;
	uint8_t rx[SERIAL_RX_SIZE];
	unsigned rx_head, rx_len;
	int out_fd; /* -1: output discarded */
	/* Drives the interrupt line; called with the lock held, only on a change. */
	void (*set_irq)(void *ctx, int level);
	void *irq_ctx;
};

void serial_init(struct serial *s, int out_fd, void (*set_irq)(void *, int), void *ctx);
uint8_t serial_read(struct serial *s, unsigned offset);
void serial_write(struct serial *s, unsigned offset, uint8_t value);
/* Queues input bytes; returns how many fit. */
unsigned serial_push_input(struct serial *s, const uint8_t *buf, unsigned len);

struct snap_writer;
struct snap_cursor;
struct kite_err;
/* Snapshots: the guest-visible registers and the receive FIFO, into the open
 * section of w / from a section's cursor. restore checks every value and the
 * section's length before it changes anything, then brings the interrupt line
 * in line with the restored registers. 0, or -1 with err (KITE_EXIT_IMAGE). */
void serial_save(struct serial *s, struct snap_writer *w);
int serial_restore(struct serial *s, struct snap_cursor *c, struct kite_err *err);

#endif
