/* The COM1 16550A: what the Linux 8250 driver needs to detect a 16550A, print
 * with THRE interrupts, and receive input. */
#include "devices/serial.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/device.h"
#include "snapshot/snapfile.h"

#define UART_RBR_THR 0
#define UART_IER 1
#define UART_IIR_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & 1) ? IIR_FIFO : 0;
	if ((s->ier & IER_RDI) && s->rx_len)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thre_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NONE;
}

static void update_irq(struct serial *s)
{
	bool level = (iir(s) & IIR_NONE) == 0;
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->set_irq)
			s->set_irq(s->irq_ctx, level);
	}
}

void serial_init(struct serial *s, int out_fd, void (*set_irq)(void *, int), void *ctx)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->rx_space, NULL);
	s->out_fd = out_fd;
	s->set_irq = set_irq;
	s->irq_ctx = ctx;
	s->mcr = 0x08;                  /* OUT2 */
	s->msr = 0xb0;                  /* DCD, DSR, CTS */
	s->dll = 0x0c;                  /* 9600 baud, as after reset */
}

static void rx_put(struct serial *s, uint8_t b)
{
	if (s->rx_len < SERIAL_RX_SIZE) {
		s->rx[(s->rx_head + s->rx_len) % SERIAL_RX_SIZE] = b;
		s->rx_len++;
	}
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		rx_put(s, b);
		return;
	}
	if (s->out_fd >= 0) {
		/* The console is best effort: a closed terminal must not stop the guest. */
		ssize_t r;
		do
			r = write(s->out_fd, &b, 1);
		while (r < 0 && errno == EINTR);
	}
}

uint8_t serial_read(struct serial *s, unsigned offset)
{
	uint8_t v = 0;
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_len) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
			s->rx_len--;
			pthread_cond_signal(&s->rx_space);
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR_FCR:
		v = iir(s);
		/* Reading IIR acknowledges a THRE interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			s->thre_pending = false;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
		break;
	case UART_MSR:
		if (s->mcr & MCR_LOOP) {
			/* Loopback: outputs DTR/RTS/OUT1/OUT2 appear as DSR/CTS/RI/DCD. */
			v = (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) |
				      ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
		} else {
			v = s->msr;
		}
		break;
	case UART_SCR:
		v = s->scr;
		break;
	default:
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

void serial_write(struct serial *s, unsigned offset, uint8_t value)
{
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = value;
		} else {
			transmit(s, value);
			/* Sent at once: the holding register is empty again. */
			s->thre_pending = true;
		}
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = value;
		} else {
			uint8_t old = s->ier;
			s->ier = value & 0x0f;
			if (!(old & IER_THRI) && (s->ier & IER_THRI))
				s->thre_pending = true;
		}
		break;
	case UART_IIR_FCR:
		s->fcr = value & 0xc9;
		if (value & 0x02) { /* clear receive FIFO */
			s->rx_len = 0;
			pthread_cond_signal(&s->rx_space);
		}
		break;
	case UART_LCR:
		s->lcr = value;
		break;
	case UART_MCR:
		s->mcr = value & 0x1f;
		break;
	case UART_SCR:
		s->scr = value;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

unsigned serial_push_input(struct serial *s, const uint8_t *buf, unsigned len)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = 0;
	while (n < len && s->rx_len < SERIAL_RX_SIZE)
		rx_put(s, buf[n++]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- snapshots ----
 * Section "UART": ier lcr mcr scr dll dlm fcr thre_pending (u8 each),
 * u16 rx_len, rx_len bytes (oldest first). MSR and LSR follow from the rest;
 * the interrupt line is recomputed. */

void serial_save(struct serial *s, struct snap_writer *w)
{
	pthread_mutex_lock(&s->lock);
	snapw_u8(w, s->ier);
	snapw_u8(w, s->lcr);
	snapw_u8(w, s->mcr);
	snapw_u8(w, s->scr);
	snapw_u8(w, s->dll);
	snapw_u8(w, s->dlm);
	snapw_u8(w, s->fcr);
	snapw_u8(w, s->thre_pending);
	snapw_u16(w, (uint16_t)s->rx_len);
	for (unsigned i = 0; i < s->rx_len; i++)
		snapw_u8(w, s->rx[(s->rx_head + i) % SERIAL_RX_SIZE]);
	pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, struct snap_cursor *c, struct kite_err *err)
{
	uint8_t ier = snapc_u8(c), lcr = snapc_u8(c), mcr = snapc_u8(c), scr = snapc_u8(c);
	uint8_t dll = snapc_u8(c), dlm = snapc_u8(c), fcr = snapc_u8(c), thre = snapc_u8(c);
	uint16_t rx_len = snapc_u16(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "serial: state section is short");
	if (rx_len > SERIAL_RX_SIZE)
		return err_set(err, KITE_EXIT_IMAGE, "serial: %u bytes in the receive FIFO (at most %u)",
			       rx_len, SERIAL_RX_SIZE);
	uint8_t rx[SERIAL_RX_SIZE];
	snapc_bytes(c, rx, rx_len);
	if (!snapc_done(c))
		return err_set(err, KITE_EXIT_IMAGE, "serial: state section is %s",
			       c->bad ? "short" : "longer than its fields");
	/* What the registers can hold after guest writes. */
	if (ier & ~0x0fu)
		return err_set(err, KITE_EXIT_IMAGE, "serial: IER 0x%02x has reserved bits set", ier);
	if (mcr & ~0x1fu)
		return err_set(err, KITE_EXIT_IMAGE, "serial: MCR 0x%02x has reserved bits set", mcr);
	if (fcr & ~0xc9u)
		return err_set(err, KITE_EXIT_IMAGE, "serial: FCR 0x%02x has bits that never stick", fcr);
	if (thre > 1)
		return err_set(err, KITE_EXIT_IMAGE, "serial: THRE pending flag %u is not 0 or 1", thre);

	pthread_mutex_lock(&s->lock);
	s->ier = ier;
	s->lcr = lcr;
	s->mcr = mcr;
	s->scr = scr;
	s->dll = dll;
	s->dlm = dlm;
	s->fcr = fcr;
	s->thre_pending = thre;
	memcpy(s->rx, rx, rx_len);
	s->rx_head = 0;
	s->rx_len = rx_len;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- COM1 as a kite device ---- */

static struct serial com1;
static struct vm *com1_vm;
static pthread_t input_thread;
static bool input_started;
static struct termios saved_tio;
static bool tio_saved;

static void com1_set_irq(void *ctx, int level)
{
	vm_irq_set(ctx, IRQ_COM1, level);
}

static void com1_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	data[0] = serial_read(o, (unsigned)off);
	for (unsigned i = 1; i < size; i++)
		data[i] = 0;
}

static void com1_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	(void)size;
	serial_write(o, (unsigned)off, data[0]);
}

static const struct bus_ops com1_ops = {.read = com1_read, .write = com1_write};

static void *input_loop(void *arg)
{
	struct serial *s = arg;
	uint8_t buf[256];
	while (!vm_stopping(com1_vm)) {
		struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
		int r = poll(&p, 1, 200);
		if (r <= 0)
			continue;
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n <= 0)
			break; /* EOF: the guest simply gets no more input */
		unsigned off = 0;
		while (off < (unsigned)n && !vm_stopping(com1_vm)) {
			off += serial_push_input(s, buf + off, (unsigned)n - off);
			if (off < (unsigned)n) {
				/* Guest is not reading: wait for room rather than drop input. */
				pthread_mutex_lock(&s->lock);
				if (s->rx_len == SERIAL_RX_SIZE) {
					struct timespec ts;
					clock_gettime(CLOCK_REALTIME, &ts);
					ts.tv_nsec += 100000000;
					if (ts.tv_nsec >= 1000000000) {
						ts.tv_sec++;
						ts.tv_nsec -= 1000000000;
					}
					pthread_cond_timedwait(&s->rx_space, &s->lock, &ts);
				}
				pthread_mutex_unlock(&s->lock);
			}
		}
	}
	return NULL;
}

static void restore_tty(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = false;
	}
}

/* Input comes from a terminal (put in raw mode, Ctrl-C still stops kite) or a
 * pipe; a file or /dev/null on stdin gives the guest no input. */
static bool stdin_is_interactive(void)
{
	struct stat st;
	if (isatty(STDIN_FILENO))
		return true;
	return fstat(STDIN_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static int com1_create(struct vm *vm, struct kite_err *err)
{
	const struct vm_config *cfg = vm->cfg;
	int fd = -1;
	if (cfg->serial == SERIAL_STDIO) {
		fd = STDOUT_FILENO;
	} else if (cfg->serial == SERIAL_FILE) {
		fd = open(cfg->serial_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return err_set(err, KITE_EXIT_USAGE, "--serial: open '%s': %s", cfg->serial_path,
				       strerror(errno));
	}
	com1_vm = vm;
	serial_init(&com1, fd, com1_set_irq, vm);
	if (bus_register(&vm->pio, PORT_COM1, 8, &com1_ops, &com1, "serial-com1") < 0)
		return err_set(err, KITE_EXIT_ERROR, "serial: port range busy");
	if (cfg->serial == SERIAL_STDIO && stdin_is_interactive()) {
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
			struct termios raw = saved_tio;
			raw.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
			raw.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | IEXTEN);
			raw.c_cc[VMIN] = 1;
			raw.c_cc[VTIME] = 0;
			tio_saved = true;
			atexit(restore_tty);
			tcsetattr(STDIN_FILENO, TCSANOW, &raw);
		}
		if (pthread_create(&input_thread, NULL, input_loop, &com1) == 0)
			input_started = true;
	}
	return 0;
}

static void com1_destroy(struct vm *vm)
{
	(void)vm;
	if (input_started) {
		pthread_join(input_thread, NULL);
		input_started = false;
	}
	restore_tty();
	if (com1.out_fd > STDERR_FILENO)
		close(com1.out_fd);
}

static int com1_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	(void)vm;
	(void)err;
	snapw_begin(w, "UART", 0);
	serial_save(&com1, w);
	snapw_end(w);
	return 0;
}

static int com1_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	(void)vm;
	struct snap_cursor c;
	if (!snapr_find(r, "UART", 0, &c))
		return err_set(err, KITE_EXIT_IMAGE, "serial: the snapshot has no COM1 state (section UART)");
	return serial_restore(&com1, &c, err);
}

KITE_DEVICE(serial, {.name = "serial", .create = com1_create, .destroy = com1_destroy,
		     .save = com1_save, .restore = com1_restore});
