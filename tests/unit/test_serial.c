/* The COM1 16550A model: the probes Linux's 8250 driver runs before it trusts
 * the port, the interrupt line (raised and lowered only on a change), output to
 * the console descriptor, and input through the receive FIFO. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/serial.h"
#include "snap_test.h"

/* Register offsets and bits (National Semiconductor PC16550D data sheet). */
enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
       LSR = 5, MSR = 6, SCR = 7 };
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_ID 0x0e
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

struct irq_log {
	int calls;
	int level;
	int levels[256];
};

static void record_irq(void *ctx, int level)
{
	struct irq_log *l = ctx;
	if (l->calls < (int)(sizeof(l->levels) / sizeof(l->levels[0])))
		l->levels[l->calls] = level;
	l->calls++;
	l->level = level;
}

struct ctx {
	struct serial s;
	struct irq_log irq;
	int pipe[2]; /* [0]: what the console would show */
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(c);
		return -1;
	}
	serial_init(&c->s, c->pipe[1], record_irq, &c->irq);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	close(c->pipe[0]);
	close(c->pipe[1]);
	free(c);
	return 0;
}

static size_t console(struct ctx *c, char *buf, size_t max)
{
	ssize_t n = read(c->pipe[0], buf, max);
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return (size_t)n;
}

static uint8_t rd(struct ctx *c, unsigned reg) { return serial_read(&c->s, reg); }
static void wr(struct ctx *c, unsigned reg, uint8_t v) { serial_write(&c->s, reg, v); }

static void reset_state(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(rd(c, IER), 0);
	assert_int_equal(rd(c, IIR), IIR_NO_INT); /* no FIFO yet, nothing pending */
	assert_int_equal(rd(c, LSR), LSR_THRE | LSR_TEMT);
	assert_int_equal(rd(c, MCR), MCR_OUT2);
	assert_int_equal(rd(c, LCR), 0);
	wr(c, LCR, LCR_DLAB);
	assert_int_equal(rd(c, DLL), 0x0c); /* 9600 baud */
	assert_int_equal(rd(c, DLM), 0);
	wr(c, LCR, 0x03);
	assert_int_equal(c->irq.calls, 0);
}

/* The order of probes in Linux's autoconfig(): IER read-back, the loopback
 * modem-status test, then FIFO detection and the 16550A sub-type checks. */
static void linux_8250_autoconfig(void **state)
{
	struct ctx *c = *state;

	/* IER: only the low four bits exist. */
	uint8_t saved_ier = rd(c, IER);
	wr(c, IER, 0);
	assert_int_equal(rd(c, IER) & 0x0f, 0);
	wr(c, IER, 0x0f);
	assert_int_equal(rd(c, IER) & 0x0f, 0x0f);
	wr(c, IER, 0xff);
	assert_int_equal(rd(c, IER), 0x0f);
	wr(c, IER, saved_ier);

	/* Loopback: MCR outputs come back as modem-status inputs. */
	uint8_t saved_mcr = rd(c, MCR);
	wr(c, MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
	assert_int_equal(rd(c, MSR) & 0xf0, 0x90); /* CTS | DCD */
	wr(c, MCR, MCR_LOOP | MCR_DTR);
	assert_int_equal(rd(c, MSR) & 0xf0, 0x20); /* DSR */
	wr(c, MCR, MCR_LOOP | MCR_OUT1);
	assert_int_equal(rd(c, MSR) & 0xf0, 0x40); /* RI */
	wr(c, MCR, MCR_LOOP | 0x0f);
	assert_int_equal(rd(c, MSR) & 0xf0, 0xf0);
	wr(c, MCR, MCR_LOOP);
	assert_int_equal(rd(c, MSR) & 0xf0, 0x00);
	wr(c, MCR, saved_mcr);

	/* EFR probe with LCR 0xBF: a 16550A has no EFR there. */
	wr(c, LCR, 0xbf);
	wr(c, 2, 0);
	wr(c, LCR, 0);

	/* FIFO enable: IIR bits 7:6 both set means 16550A. */
	wr(c, FCR, FCR_ENABLE);
	assert_int_equal(rd(c, IIR) >> 6, 3);

	/* 16550A sub-type probes: EFR reads non-zero behind DLAB (no ST16C650)... */
	wr(c, LCR, LCR_DLAB);
	assert_int_not_equal(rd(c, 2), 0);
	wr(c, LCR, 0xbf);
	assert_int_not_equal(rd(c, 2), 0);
	/* ... no NS16550A bank switch mirroring MCR loop into bank 2 ... */
	wr(c, LCR, 0);
	uint8_t mcr = rd(c, MCR);
	wr(c, LCR, 0xe0);
	uint8_t excr1 = rd(c, 2);
	assert_int_equal((excr1 ^ mcr) & MCR_LOOP, 0);
	wr(c, LCR, 0);
	wr(c, MCR, mcr ^ MCR_LOOP);
	wr(c, LCR, 0xe0);
	excr1 = rd(c, 2);
	wr(c, LCR, 0);
	wr(c, MCR, mcr);
	assert_int_equal((excr1 ^ mcr) & MCR_LOOP, 0);
	/* ... and no 64-byte FIFO bit (TI16750), with or without DLAB. */
	wr(c, FCR, FCR_ENABLE | 0x20);
	assert_int_equal(rd(c, IIR) & 0xe0, 0xc0);
	wr(c, LCR, LCR_DLAB);
	wr(c, FCR, FCR_ENABLE | 0x20);
	assert_int_equal(rd(c, IIR) & 0xe0, 0xc0);
	wr(c, FCR, FCR_ENABLE);
	wr(c, LCR, 0);

	/* Probing printed nothing and left the line low (IER 0x0f raised it
	 * briefly through THRI, as it would on a real 16550A). */
	char buf[16];
	assert_int_equal(console(c, buf, sizeof(buf)), 0);
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(c->irq.calls % 2, 0);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
}

static void scratch_register(void **state)
{
	struct ctx *c = *state;
	wr(c, SCR, 0xa5);
	assert_int_equal(rd(c, SCR), 0xa5);
	wr(c, SCR, 0x5a);
	assert_int_equal(rd(c, SCR), 0x5a);
	wr(c, LCR, LCR_DLAB); /* the scratch register ignores DLAB */
	assert_int_equal(rd(c, SCR), 0x5a);
}

static void fifo_bits_follow_fcr(void **state)
{
	struct ctx *c = *state;
	wr(c, FCR, FCR_ENABLE);
	assert_int_equal(rd(c, IIR), IIR_FIFO | IIR_NO_INT);
	wr(c, FCR, 0);
	assert_int_equal(rd(c, IIR), IIR_NO_INT);
}

static void divisor_latch(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, IER_RDI);
	wr(c, LCR, LCR_DLAB | 0x03);
	wr(c, DLL, 0x01); /* 115200 baud */
	wr(c, DLM, 0x00);
	assert_int_equal(rd(c, DLL), 0x01);
	assert_int_equal(rd(c, DLM), 0x00);
	wr(c, DLM, 0x12);
	assert_int_equal(rd(c, DLM), 0x12);
	wr(c, LCR, 0x03);
	/* Behind the latch, IER kept its value and no byte was transmitted. */
	assert_int_equal(rd(c, IER), IER_RDI);
	assert_int_equal(rd(c, LCR), 0x03);
	char buf[16];
	assert_int_equal(console(c, buf, sizeof(buf)), 0);
	wr(c, LCR, LCR_DLAB);
	assert_int_equal(rd(c, DLL), 0x01);
	assert_int_equal(rd(c, DLM), 0x12);
	/* With DLAB set, offset 0 reads the latch, not received data. */
	wr(c, LCR, 0);
	assert_int_equal(serial_push_input(&c->s, (const uint8_t *)"z", 1), 1);
	wr(c, LCR, LCR_DLAB);
	assert_int_equal(rd(c, RBR), 0x01);
	wr(c, LCR, 0);
	assert_int_equal(rd(c, RBR), 'z');
}

static void transmit_to_console(void **state)
{
	struct ctx *c = *state;
	const char *msg = "kite\r\n";
	for (const char *p = msg; *p; p++) {
		assert_true(rd(c, LSR) & LSR_THRE);
		wr(c, THR, (uint8_t)*p);
	}
	char buf[16] = {0};
	assert_int_equal(console(c, buf, sizeof(buf)), strlen(msg));
	assert_string_equal(buf, msg);
	/* Output without THRI enabled raises no interrupt. */
	assert_int_equal(c->irq.calls, 0);
}

static void transmit_without_console(void **state)
{
	(void)state;
	struct serial s;
	struct irq_log irq = {0};
	serial_init(&s, -1, record_irq, &irq);
	serial_write(&s, IER, IER_THRI);
	for (int i = 0; i < 100; i++)
		serial_write(&s, THR, 'x');
	assert_true(serial_read(&s, LSR) & LSR_THRE);
	assert_int_equal(irq.level, 1);
	/* And without an interrupt line at all. */
	struct serial quiet;
	serial_init(&quiet, -1, NULL, NULL);
	serial_write(&quiet, IER, IER_THRI);
	serial_write(&quiet, THR, 'x');
	assert_int_equal(serial_read(&quiet, IIR) & IIR_ID, IIR_THRI);
}

static void loopback_data(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, MCR_LOOP);
	wr(c, THR, 0x55);
	wr(c, THR, 0xaa);
	assert_true(rd(c, LSR) & LSR_DR);
	assert_int_equal(rd(c, RBR), 0x55);
	assert_int_equal(rd(c, RBR), 0xaa);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
	char buf[4];
	assert_int_equal(console(c, buf, sizeof(buf)), 0); /* looped, not sent */
	wr(c, MCR, MCR_OUT2);
	wr(c, THR, 'o');
	assert_int_equal(console(c, buf, sizeof(buf)), 1);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
}

static void thre_interrupt(void **state)
{
	struct ctx *c = *state;
	wr(c, FCR, FCR_ENABLE);
	wr(c, IER, IER_THRI);
	assert_int_equal(c->irq.calls, 1);
	assert_int_equal(c->irq.level, 1);
	/* Reading IIR names THRE and acknowledges it. */
	assert_int_equal(rd(c, IIR), IIR_FIFO | IIR_THRI);
	assert_int_equal(c->irq.calls, 2);
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(rd(c, IIR), IIR_FIFO | IIR_NO_INT);
	assert_int_equal(c->irq.calls, 2);
	/* Each byte sent empties the holding register again. */
	wr(c, THR, 'a');
	assert_int_equal(c->irq.level, 1);
	assert_int_equal(rd(c, IIR) & IIR_ID, IIR_THRI);
	assert_int_equal(c->irq.level, 0);
	/* Disabling THRI drops a pending one. */
	wr(c, THR, 'b');
	assert_int_equal(c->irq.level, 1);
	wr(c, IER, 0);
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(rd(c, IIR) & IIR_NO_INT, IIR_NO_INT);
	assert_int_equal(c->irq.calls, 6);
	for (int i = 0; i < c->irq.calls; i++)
		assert_int_equal(c->irq.levels[i], (i + 1) % 2);
}

/* serial8250_do_startup's checks: enabling THRI must produce an interrupt
 * (else UART_BUG_TXEN), and re-enabling it must re-assert it (else
 * UART_BUG_THRE and a polling timer). */
static void linux_startup_thre_tests(void **state)
{
	struct ctx *c = *state;
	wr(c, FCR, FCR_ENABLE);
	wr(c, IER, IER_THRI);
	uint8_t lsr = rd(c, LSR);
	uint8_t iir1 = rd(c, IIR);
	wr(c, IER, 0);
	assert_true(lsr & LSR_TEMT);
	assert_int_equal(iir1 & IIR_NO_INT, 0);

	wr(c, IER, IER_THRI);
	iir1 = rd(c, IIR);
	wr(c, IER, 0);
	wr(c, IER, IER_THRI);
	uint8_t iir2 = rd(c, IIR);
	wr(c, IER, 0);
	assert_int_equal(iir1 & IIR_NO_INT, 0);
	assert_int_equal(iir2 & IIR_NO_INT, 0);
	assert_int_equal(c->irq.level, 0);
}

static void rx_interrupt(void **state)
{
	struct ctx *c = *state;
	wr(c, FCR, FCR_ENABLE);
	assert_int_equal(serial_push_input(&c->s, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(c->irq.calls, 0); /* RDI not enabled yet */
	assert_true(rd(c, LSR) & LSR_DR);
	wr(c, IER, IER_RDI);
	assert_int_equal(c->irq.calls, 1);
	assert_int_equal(c->irq.level, 1);
	assert_int_equal(rd(c, IIR), IIR_FIFO | IIR_RDI);
	assert_int_equal(c->irq.level, 1); /* reading IIR does not clear RDI */
	assert_int_equal(rd(c, RBR), 'a');
	assert_int_equal(c->irq.calls, 1);
	assert_int_equal(serial_push_input(&c->s, (const uint8_t *)"c", 1), 1);
	assert_int_equal(c->irq.calls, 1); /* still high: no new call */
	assert_int_equal(rd(c, RBR), 'b');
	assert_int_equal(rd(c, RBR), 'c');
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(c->irq.calls, 2);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
	/* An empty FIFO reads as 0 and changes nothing. */
	assert_int_equal(rd(c, RBR), 0);
	assert_int_equal(c->irq.calls, 2);
}

static void rx_has_priority_over_thre(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, IER_RDI | IER_THRI);
	serial_push_input(&c->s, (const uint8_t *)"x", 1);
	assert_int_equal(rd(c, IIR) & IIR_ID, IIR_RDI);
	assert_int_equal(rd(c, RBR), 'x');
	/* THRE is still pending underneath. */
	assert_int_equal(c->irq.level, 1);
	assert_int_equal(rd(c, IIR) & IIR_ID, IIR_THRI);
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(c->irq.calls, 2);
}

static void rx_fifo_full(void **state)
{
	struct ctx *c = *state;
	static uint8_t in[SERIAL_RX_SIZE + 10];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	assert_int_equal(serial_push_input(&c->s, in, sizeof(in)), SERIAL_RX_SIZE);
	assert_int_equal(serial_push_input(&c->s, in, 1), 0);
	assert_int_equal(rd(c, RBR), 0);
	assert_int_equal(serial_push_input(&c->s, in + 7, 2), 1);
	/* Order is kept across the ring's wrap-around. */
	for (unsigned i = 1; i < SERIAL_RX_SIZE; i++)
		assert_int_equal(rd(c, RBR), (uint8_t)i);
	assert_int_equal(rd(c, RBR), 7);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
	assert_int_equal(serial_push_input(&c->s, in, 0), 0);
}

static void loopback_into_full_fifo_drops(void **state)
{
	struct ctx *c = *state;
	static uint8_t in[SERIAL_RX_SIZE];
	memset(in, 'i', sizeof(in));
	assert_int_equal(serial_push_input(&c->s, in, sizeof(in)), SERIAL_RX_SIZE);
	wr(c, MCR, MCR_LOOP);
	wr(c, THR, 'L');
	for (unsigned i = 0; i < SERIAL_RX_SIZE; i++)
		assert_int_equal(rd(c, RBR), 'i');
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
}

static void fcr_clears_rx(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, IER_RDI);
	serial_push_input(&c->s, (const uint8_t *)"abc", 3);
	assert_int_equal(c->irq.level, 1);
	wr(c, FCR, FCR_ENABLE | FCR_CLEAR_RX);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
	assert_int_equal(c->irq.level, 0);
	assert_int_equal(c->irq.calls, 2);
	/* The clear bit is self-clearing: FIFO mode stays on. */
	assert_int_equal(rd(c, IIR) & IIR_FIFO, IIR_FIFO);
}

static void read_only_and_unknown_registers(void **state)
{
	struct ctx *c = *state;
	wr(c, LSR, 0x00);
	assert_int_equal(rd(c, LSR), LSR_THRE | LSR_TEMT);
	wr(c, MSR, 0x00);
	assert_int_equal(rd(c, MSR), 0xb0);
	wr(c, MCR, 0xff);
	assert_int_equal(rd(c, MCR), 0x1f);
	wr(c, MCR, MCR_OUT2);
	/* Offsets past the eight registers: ignored, read as 0. */
	wr(c, 8, 0xff);
	wr(c, 0xffffffffu, 0xff);
	assert_int_equal(rd(c, 8), 0);
	assert_int_equal(rd(c, 0xffffffffu), 0);
	assert_int_equal(c->irq.calls, 0);
	char buf[4];
	assert_int_equal(console(c, buf, sizeof(buf)), 0);
}

static void irq_only_on_change(void **state)
{
	struct ctx *c = *state;
	/* Hammer with accesses that do not change the line. */
	for (int i = 0; i < 50; i++) {
		rd(c, LSR);
		rd(c, IIR);
		wr(c, SCR, (uint8_t)i);
		wr(c, IER, 0);
	}
	assert_int_equal(c->irq.calls, 0);
	wr(c, IER, IER_RDI);
	for (int i = 0; i < 50; i++)
		serial_push_input(&c->s, (const uint8_t *)"q", 1);
	assert_int_equal(c->irq.calls, 1);
	for (int i = 0; i < 50; i++)
		rd(c, RBR);
	assert_int_equal(c->irq.calls, 2);
	for (int i = 0; i < c->irq.calls; i++)
		assert_int_equal(c->irq.levels[i], (i + 1) % 2);
}

struct feeder {
	struct serial *s;
	unsigned total;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	unsigned sent = 0;
	while (sent < f->total) {
		uint8_t chunk[64];
		unsigned n = f->total - sent < sizeof(chunk) ? f->total - sent : sizeof(chunk);
		for (unsigned i = 0; i < n; i++)
			chunk[i] = (uint8_t)(sent + i);
		unsigned got = serial_push_input(f->s, chunk, n);
		sent += got;
		if (got < n)
			sched_yield();
	}
	return NULL;
}

/* The input thread pushes while a vCPU reads: no byte lost or reordered. */
static void concurrent_input(void **state)
{
	struct ctx *c = *state;
	struct feeder f = {.s = &c->s, .total = 20000};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
	unsigned got = 0;
	while (got < f.total) {
		if (rd(c, LSR) & LSR_DR) {
			assert_int_equal(rd(c, RBR), (uint8_t)got);
			got++;
		} else {
			sched_yield();
		}
	}
	pthread_join(t, NULL);
	assert_int_equal(rd(c, LSR) & LSR_DR, 0);
}

/* ---- snapshots ---- */

static void save_to(struct ctx *c, struct snap_reader *r)
{
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "UART", 0);
	serial_save(&c->s, &w);
	snapw_end(&w);
	snap_test_reopen(&w, r);
}

static int restore_from(struct ctx *c, const struct snap_reader *r, struct kite_err *err)
{
	struct snap_cursor cur;
	assert_true(snapr_find(r, "UART", 0, &cur));
	return serial_restore(&c->s, &cur, err);
}

/* Divisor, line settings, scratch, interrupt enables, FIFO mode and unread
 * input survive into a fresh UART, which raises its line for the input. */
static void snapshot_round_trip(void **state)
{
	struct ctx *c = *state;
	wr(c, LCR, LCR_DLAB);
	wr(c, DLL, 0x01); /* 115200 */
	wr(c, DLM, 0x00);
	wr(c, LCR, 0x03 | LCR_DLAB); /* left with DLAB set: the restored one must be too */
	wr(c, SCR, 0x5a);
	wr(c, MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
	wr(c, FCR, FCR_ENABLE);
	serial_push_input(&c->s, (const uint8_t *)"hi!", 3);
	assert_int_equal(rd(c, LCR), 0x83);
	/* IER is behind DLAB now: set it by clearing DLAB first. */
	wr(c, LCR, 0x03);
	wr(c, IER, IER_RDI | IER_THRI);
	assert_int_equal(rd(c, RBR), 'h'); /* one byte read before the snapshot */
	wr(c, LCR, 0x83);
	struct snap_reader r;
	save_to(c, &r);

	struct ctx fresh = {0};
	serial_init(&fresh.s, -1, record_irq, &fresh.irq);
	struct kite_err err = {0};
	assert_int_equal(restore_from(&fresh, &r, &err), 0);
	assert_int_equal(err.code, 0);
	assert_int_equal(fresh.irq.level, 1); /* input waits, RDI enabled */
	assert_int_equal(serial_read(&fresh.s, LCR), 0x83);
	assert_int_equal(serial_read(&fresh.s, DLL), 0x01);
	assert_int_equal(serial_read(&fresh.s, DLM), 0x00);
	assert_int_equal(serial_read(&fresh.s, SCR), 0x5a);
	assert_int_equal(serial_read(&fresh.s, MCR), MCR_OUT2 | MCR_RTS | MCR_DTR);
	serial_write(&fresh.s, LCR, 0x03);
	assert_int_equal(serial_read(&fresh.s, IER), IER_RDI | IER_THRI);
	assert_int_equal(serial_read(&fresh.s, IIR), IIR_FIFO | IIR_RDI);
	assert_int_equal(serial_read(&fresh.s, RBR), 'i');
	assert_int_equal(serial_read(&fresh.s, RBR), '!');
	assert_int_equal(serial_read(&fresh.s, LSR) & LSR_DR, 0);
	snapr_free(&r);
}

/* Values no guest write can leave, and sections of the wrong length: refused,
 * and the UART keeps its state. */
static void snapshot_refusals(void **state)
{
	struct ctx *c = *state;
	wr(c, SCR, 0x11);
	struct snap_reader r, bad;
	save_to(c, &r);
	struct kite_err err = {0};
	static const struct { size_t off; uint8_t v; } patches[] = {
		{0, 0x10},   /* IER reserved bit */
		{2, 0x20},   /* MCR reserved bit */
		{6, 0x02},   /* FCR clear bit never sticks */
		{7, 2},      /* THRE flag */
		{9, 0x08},   /* rx_len 2048 > FIFO */
	};
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		size_t len;
		save_to(c, &bad);
		uint8_t *p = snap_test_payload(&bad, "UART", 0, &len);
		assert_true(patches[i].off < len);
		p[patches[i].off] = patches[i].v;
		struct ctx fresh = {0};
		serial_init(&fresh.s, -1, record_irq, &fresh.irq);
		err = (struct kite_err){0};
		assert_int_equal(restore_from(&fresh, &bad, &err), -1);
		assert_image_err(&err);
		assert_int_equal(serial_read(&fresh.s, SCR), 0); /* untouched */
		snapr_free(&bad);
	}
	for (long cut = -1; cut <= 1; cut += 2) {
		snap_test_resize(&r, "UART", 0, cut, &bad);
		struct ctx fresh = {0};
		serial_init(&fresh.s, -1, record_irq, &fresh.irq);
		err = (struct kite_err){0};
		assert_int_equal(restore_from(&fresh, &bad, &err), -1);
		assert_image_err(&err);
		assert_non_null(strstr(err.msg, cut > 0 ? "short" : "longer"));
		assert_int_equal(serial_read(&fresh.s, SCR), 0);
		snapr_free(&bad);
	}
	snapr_free(&r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(reset_state),
		T(linux_8250_autoconfig),
		T(scratch_register),
		T(fifo_bits_follow_fcr),
		T(divisor_latch),
		T(transmit_to_console),
		cmocka_unit_test(transmit_without_console),
		T(loopback_data),
		T(thre_interrupt),
		T(linux_startup_thre_tests),
		T(rx_interrupt),
		T(rx_has_priority_over_thre),
		T(rx_fifo_full),
		T(loopback_into_full_fifo_drops),
		T(fcr_clears_rx),
		T(read_only_and_unknown_registers),
		T(irq_only_on_change),
		T(concurrent_input),
		T(snapshot_round_trip),
		T(snapshot_refusals),
	};
	return cmocka_run_group_tests_name("serial", tests, NULL, NULL);
}
