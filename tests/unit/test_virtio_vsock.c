/* virtio-vsock against a fake driver and real Unix sockets: the test plays the
 * guest (rx buffers, tx packets in a malloc'd guest memory) and the host
 * processes (listeners on <uds>_<port>, clients of uds), and runs the device's
 * watched sockets itself (poll, then the callbacks), as the event thread would. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "virtio/virtio.h"
#include "virtio/vsock.h"
#include "snap_test.h"

#define RAM MiB(4)
#define CID 3
#define GUEST_BUF 65536u /* the fake guest's buf_alloc unless a test says */
#define RX_QS 64
#define TX_QS 32
#define TX_SLOTS 16 /* two descriptors each: header, payload */
#define EV_QS 8
#define QBASE(q) (0x1000ULL + (q) * 0x4000ULL) /* desc; avail +0x1000, used +0x2000 */
#define RXBUF(i) (0x20000ULL + (i) * 0x2000ULL)
#define RX_BUF_LEN (VSOCK_HDR_SIZE + 4096)
#define TXBUF(i) (0x100000ULL + (i) * 0x11000ULL) /* header; payload at +0x40 */
#define MAX_WATCH 64

struct watch {
	int fd;
	uint32_t events;
	virtio_watch_fn cb;
	void *ctx;
};

struct fake {
	struct virtio_dev d; /* first: the env callbacks get &d */
	struct gmem m;
	uint8_t *ram;
	struct vq vq[3];
	bool ready[3];
	uint16_t qsize[3];
	uint16_t avail_idx[3], used_seen[3];
	unsigned signals[3];
	unsigned needs_reset;
	struct watch w[MAX_WATCH];
	unsigned nr_w;
	struct vsock *v;
	char dir[64], uds[128];
	int listeners[8];
	unsigned nr_listeners;
};

/* ---- fake transport ---- */

static struct fake *F(struct virtio_dev *d) { return (struct fake *)d; }

static struct vq *f_queue(struct virtio_dev *d, unsigned q)
{
	return q < 3 && F(d)->ready[q] ? &F(d)->vq[q] : NULL;
}

static void f_signal(struct virtio_dev *d, unsigned q)
{
	if (vq_should_notify(&F(d)->vq[q]))
		F(d)->signals[q]++;
}

static struct watch *f_find(struct fake *f, int fd)
{
	for (unsigned i = 0; i < f->nr_w; i++)
		if (f->w[i].fd == fd)
			return &f->w[i];
	return NULL;
}

static int f_watch(struct virtio_dev *d, int fd, uint32_t events, virtio_watch_fn cb, void *ctx)
{
	struct fake *f = F(d);
	struct watch *w = f_find(f, fd);
	if (!w) {
		assert_true(f->nr_w < MAX_WATCH);
		w = &f->w[f->nr_w++];
	}
	*w = (struct watch){fd, events, cb, ctx};
	return 0;
}

static void f_unwatch(struct virtio_dev *d, int fd)
{
	struct fake *f = F(d);
	struct watch *w = f_find(f, fd);
	assert_non_null(w); /* the device only unwatches what it watches */
	*w = f->w[--f->nr_w];
}

static void f_needs_reset(struct virtio_dev *d, const char *why)
{
	(void)why;
	F(d)->needs_reset++;
}

static const struct vsock_env fake_env = {
	.queue = f_queue, .signal = f_signal, .watch = f_watch, .unwatch = f_unwatch,
	.needs_reset = f_needs_reset,
};

/* Runs ready watched fds until none is ready: what the event thread does. A
 * device that keeps an fd ready without using it would spin: that fails. */
static void pump(struct fake *f)
{
	for (int round = 0;; round++) {
		assert_true(round < 10000);
		struct pollfd p[MAX_WATCH];
		struct watch snap[MAX_WATCH];
		unsigned n = f->nr_w;
		memcpy(snap, f->w, n * sizeof(snap[0]));
		for (unsigned i = 0; i < n; i++)
			p[i] = (struct pollfd){.fd = snap[i].fd, .events = (short)snap[i].events};
		int r = poll(p, n, 0);
		assert_true(r >= 0);
		if (r == 0)
			return;
		pthread_mutex_lock(&f->d.lock);
		for (unsigned i = 0; i < n; i++) {
			if (!p[i].revents)
				continue;
			/* An earlier callback may have unwatched it. */
			struct watch *w = f_find(f, snap[i].fd);
			if (w && w->cb == snap[i].cb && w->ctx == snap[i].ctx)
				w->cb(&f->d, w->ctx, (uint32_t)p[i].revents);
		}
		pthread_mutex_unlock(&f->d.lock);
	}
}

/* ---- fake guest memory and driver ---- */

static uint8_t *gp(struct fake *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&f->m, gpa, len);
	assert_non_null(p);
	return p;
}

static void desc(struct fake *f, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next)
{
	uint8_t *p = gp(f, QBASE(q) + 16ULL * i, 16);
	set64(p, addr);
	set32(p + 8, len);
	set16(p + 12, flags);
	set16(p + 14, next);
}

static void avail_add(struct fake *f, unsigned q, uint16_t head)
{
	uint64_t avail = QBASE(q) + 0x1000;
	set16(gp(f, avail + 4 + 2 * (f->avail_idx[q] % f->qsize[q]), 2), head);
	f->avail_idx[q]++;
	set16(gp(f, avail + 2, 2), f->avail_idx[q]);
}

static uint16_t used_idx(struct fake *f, unsigned q)
{
	return le16(gp(f, QBASE(q) + 0x2000 + 2, 2));
}

static void lock(struct fake *f) { pthread_mutex_lock(&f->d.lock); }
static void unlock(struct fake *f) { pthread_mutex_unlock(&f->d.lock); }

static void notify(struct fake *f, unsigned q)
{
	lock(f);
	vsock_ops.notify(&f->d, q);
	unlock(f);
}

static void activate(struct fake *f)
{
	for (unsigned q = 0; q < 3; q++) {
		struct vq_config c = {.size = f->qsize[q], .desc = QBASE(q),
				      .avail = QBASE(q) + 0x1000, .used = QBASE(q) + 0x2000};
		memset(gp(f, QBASE(q), 0x3000), 0, 0x3000);
		assert_int_equal(vq_init(&f->vq[q], &f->m, &c), 0);
		f->ready[q] = true;
		f->avail_idx[q] = f->used_seen[q] = 0;
	}
	lock(f);
	assert_int_equal(vsock_ops.activate(&f->d), 0);
	for (unsigned q = 0; q < 3; q++)
		vsock_ops.notify(&f->d, q);
	unlock(f);
}

/* n device-writable rx buffers of len bytes (one descriptor each). */
static void rx_post_len(struct fake *f, unsigned n, uint32_t len)
{
	for (unsigned i = 0; i < n; i++) {
		/* Slots are reused in order; never more outstanding than the queue. */
		assert_true((uint16_t)(f->avail_idx[0] - f->used_seen[0]) < RX_QS);
		uint16_t slot = f->avail_idx[0] % RX_QS;
		desc(f, 0, slot, RXBUF(slot), len, VQ_DESC_F_WRITE, 0);
		avail_add(f, 0, slot);
	}
	notify(f, VSOCK_QUEUE_RX);
}

static void rx_post(struct fake *f, unsigned n)
{
	rx_post_len(f, n, RX_BUF_LEN);
}

/* The next packet the device put in an rx buffer; false when there is none.
 * payload (cap bytes) gets its data. */
static bool rx_recv(struct fake *f, struct vsock_hdr *h, void *payload, size_t cap)
{
	if (used_idx(f, 0) == f->used_seen[0])
		return false;
	uint64_t used = QBASE(0) + 0x2000;
	uint16_t slot = f->used_seen[0] % RX_QS;
	uint32_t id = le32(gp(f, used + 4 + 8 * slot, 4));
	uint32_t len = le32(gp(f, used + 8 + 8 * slot, 4));
	f->used_seen[0]++;
	assert_true(id < RX_QS);
	assert_true(len >= VSOCK_HDR_SIZE);
	vsock_hdr_decode(gp(f, RXBUF(id), VSOCK_HDR_SIZE), h);
	assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
	assert_true(h->len <= cap || !payload);
	if (payload)
		memcpy(payload, gp(f, RXBUF(id) + VSOCK_HDR_SIZE, h->len ? h->len : 1), h->len);
	/* Every packet comes from the host to this guest, as a stream. */
	assert_int_equal(h->src_cid, VSOCK_HOST_CID);
	assert_int_equal(h->dst_cid, CID);
	assert_int_equal(h->type, VSOCK_TYPE_STREAM);
	return true;
}

static void rx_expect(struct fake *f, uint16_t op, uint32_t src_port, uint32_t dst_port,
		      struct vsock_hdr *out)
{
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, op);
	assert_int_equal(h.src_port, src_port);
	assert_int_equal(h.dst_port, dst_port);
	if (out)
		*out = h;
}

static void rx_none(struct fake *f)
{
	struct vsock_hdr h;
	bool got = rx_recv(f, &h, NULL, 0);
	if (got)
		print_error("unexpected packet op %u %u -> %u len %u\n", h.op, h.src_port,
			    h.dst_port, h.len);
	assert_false(got);
}

/* Raw tx chain: header bytes in one buffer, the payload in a second one. */
static void tx_raw(struct fake *f, const void *hdr, uint32_t hlen, const void *payload,
		   uint32_t plen)
{
	assert_true((uint16_t)(f->avail_idx[1] - used_idx(f, 1)) < TX_SLOTS);
	uint16_t slot = f->avail_idx[1] % TX_SLOTS;
	assert_true(hlen <= 0x40 && plen <= 0x11000 - 0x40);
	memcpy(gp(f, TXBUF(slot), hlen), hdr, hlen);
	desc(f, 1, (uint16_t)(2 * slot), TXBUF(slot), hlen, plen ? VQ_DESC_F_NEXT : 0,
	     (uint16_t)(2 * slot + 1));
	if (plen) {
		memcpy(gp(f, TXBUF(slot) + 0x40, plen), payload, plen);
		desc(f, 1, (uint16_t)(2 * slot + 1), TXBUF(slot) + 0x40, plen, 0, 0);
	}
	avail_add(f, 1, (uint16_t)(2 * slot));
}

static void tx_hdr(struct fake *f, const struct vsock_hdr *h, const void *payload, uint32_t plen)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	tx_raw(f, raw, sizeof(raw), payload, plen);
}

/* Sends one packet and lets the device and the sockets run. */
static void tx_send(struct fake *f, const struct vsock_hdr *h, const void *payload)
{
	tx_hdr(f, h, payload, h->len);
	notify(f, VSOCK_QUEUE_TX);
	pump(f);
}

static struct vsock_hdr gh(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	return (struct vsock_hdr){.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
				  .dst_port = dst_port, .type = VSOCK_TYPE_STREAM, .op = op,
				  .buf_alloc = GUEST_BUF};
}

static void tx_op(struct fake *f, uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	struct vsock_hdr h = gh(op, src_port, dst_port);
	tx_send(f, &h, NULL);
}

/* ---- host side ---- */

static struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path));
	return sa;
}

static int host_listen(struct fake *f, uint32_t port)
{
	char path[160];
	snprintf(path, sizeof(path), "%s_%u", f->uds, port);
	struct sockaddr_un sa = unix_addr(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_true(f->nr_listeners < 8);
	f->listeners[f->nr_listeners++] = fd;
	return fd;
}

static int host_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static int host_connect_uds(struct fake *f)
{
	struct sockaddr_un sa = unix_addr(f->uds);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void host_write(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* What the host socket holds now (nonblocking): bytes, 0 at EOF, -1 when
 * nothing is there yet. */
static ssize_t host_read(int fd, void *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
	if (n < 0) {
		assert_true(errno == EAGAIN);
		return -1;
	}
	return n;
}

static void host_expect(int fd, const char *s)
{
	char buf[256];
	size_t len = strlen(s);
	assert_true(len < sizeof(buf));
	assert_int_equal(host_read(fd, buf, sizeof(buf)), (ssize_t)len);
	assert_memory_equal(buf, s, len);
}

static void host_expect_eof(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
	/* A reset peer may also show as ECONNRESET. */
	assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	if (!f || test_ram_init(&f->m, &f->ram, RAM, 0, RAM) < 0)
		return -1;
	f->qsize[0] = RX_QS;
	f->qsize[1] = TX_QS;
	f->qsize[2] = EV_QS;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&f->d.lock, &a);
	pthread_mutexattr_destroy(&a);
	snprintf(f->d.name, sizeof(f->d.name), "virtio-vsock0");
	f->d.ops = &vsock_ops;
	snprintf(f->dir, sizeof(f->dir), "/tmp/kite-vsock-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
	struct vsock_config cfg = {.enabled = true, .cid = CID, .uds_path = f->uds};
	struct kite_err err = {0};
	f->v = vsock_new(&cfg, &fake_env, &err);
	if (!f->v) {
		print_error("vsock_new: %s\n", err.msg);
		return -1;
	}
	f->d.priv = f->v;
	*state = f;
	return 0;
}

static void rm_dir(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		print_error("could not remove %s\n", dir);
}

static int teardown(void **state)
{
	struct fake *f = *state;
	lock(f);
	vsock_ops.reset(&f->d);
	unlock(f);
	assert_int_equal(f->nr_w, 0); /* reset left nothing watched */
	vsock_ops.destroy(&f->d);
	for (unsigned i = 0; i < f->nr_listeners; i++)
		close(f->listeners[i]);
	rm_dir(f->dir);
	test_ram_free(&f->m, f->ram);
	pthread_mutex_destroy(&f->d.lock);
	free(f);
	return 0;
}

/* Guest connects to host port `port` from guest port `gport`, through a
 * listener the test made: the host end. */
static int established(struct fake *f, uint32_t gport, uint32_t port, uint32_t buf_alloc)
{
	int l = host_listen(f, port);
	struct vsock_hdr h = gh(VSOCK_OP_REQUEST, gport, port);
	h.buf_alloc = buf_alloc;
	tx_send(f, &h, NULL);
	rx_expect(f, VSOCK_OP_RESPONSE, port, gport, NULL);
	return host_accept(l);
}

/* ---- tests ---- */

static void device_identity_and_config(void **state)
{
	struct fake *f = *state;
	assert_int_equal(vsock_ops.device_id, 19);
	assert_int_equal(vsock_ops.num_queues, 3);
	assert_int_equal(vsock_ops.queue_max_size, 256);
	assert_int_equal(vsock_ops.config_len, 8);
	uint8_t cfg[8];
	memset(cfg, 0xff, sizeof(cfg));
	vsock_ops.config_read(&f->d, 0, cfg, 8);
	assert_int_equal(le64(cfg), CID);
	uint8_t hi[4] = {1, 1, 1, 1};
	vsock_ops.config_read(&f->d, 4, hi, 4);
	assert_int_equal(le32(hi), 0);
}

static void header_wire_layout(void **state)
{
	(void)state;
	struct vsock_hdr h = {.src_cid = 0x0102030405060708ULL, .dst_cid = 2, .src_port = 0x11223344,
			      .dst_port = 0x55667788, .len = 0x99, .type = 1, .op = 5,
			      .flags = 3, .buf_alloc = 0xaabbccdd, .fwd_cnt = 0x01020304};
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&h, raw);
	assert_int_equal(le64(raw), h.src_cid);
	assert_int_equal(le64(raw + 8), 2);
	assert_int_equal(le32(raw + 16), h.src_port);
	assert_int_equal(le32(raw + 20), h.dst_port);
	assert_int_equal(le32(raw + 24), 0x99);
	assert_int_equal(le16(raw + 28), 1);
	assert_int_equal(le16(raw + 30), 5);
	assert_int_equal(le32(raw + 32), 3);
	assert_int_equal(le32(raw + 36), h.buf_alloc);
	assert_int_equal(le32(raw + 40), h.fwd_cnt);
	struct vsock_hdr b;
	vsock_hdr_decode(raw, &b);
	assert_true(b.src_cid == h.src_cid && b.dst_cid == h.dst_cid && b.src_port == h.src_port &&
		    b.dst_port == h.dst_port && b.len == h.len && b.type == h.type && b.op == h.op &&
		    b.flags == h.flags && b.buf_alloc == h.buf_alloc && b.fwd_cnt == h.fwd_cnt);
}

static void guest_connect_and_data_both_ways(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int l = host_listen(f, 1234);
	tx_op(f, VSOCK_OP_REQUEST, 5000, 1234);
	struct vsock_hdr h;
	rx_expect(f, VSOCK_OP_RESPONSE, 1234, 5000, &h);
	assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC);
	assert_int_equal(h.fwd_cnt, 0);
	assert_true(f->signals[VSOCK_QUEUE_RX] > 0);
	assert_true(f->signals[VSOCK_QUEUE_TX] > 0);
	assert_int_equal(used_idx(f, 1), 1); /* the tx chain went back */
	int s = host_accept(l);
	assert_int_equal(vsock_nr_conns(f->v), 1);

	/* guest -> host */
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 5000, 1234);
	rw.len = 5;
	tx_send(f, &rw, "hello");
	host_expect(s, "hello");

	/* host -> guest */
	host_write(s, "world!", 6);
	pump(f);
	char buf[64];
	assert_true(rx_recv(f, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.src_port, 1234);
	assert_int_equal(h.dst_port, 5000);
	assert_int_equal(h.len, 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(h.fwd_cnt, 5); /* the host took our 5 bytes */
	rx_none(f);

	/* guest RST: the host socket closes, the entry goes, no answer */
	tx_op(f, VSOCK_OP_RST, 5000, 1234);
	host_expect_eof(s);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	rx_none(f);
	assert_int_equal(f->d.errors, 0);
	close(s);
}

static void no_listener_gets_rst(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 4);
	tx_op(f, VSOCK_OP_REQUEST, 6000, 999);
	rx_expect(f, VSOCK_OP_RST, 999, 6000, NULL);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	/* A socket file without a listener (stale) is refused the same way. */
	int l = host_listen(f, 998);
	close(l);
	f->nr_listeners--;
	tx_op(f, VSOCK_OP_REQUEST, 6001, 998);
	rx_expect(f, VSOCK_OP_RST, 998, 6001, NULL);
	/* Packets other than REQUEST for no connection: RST, but never for a RST. */
	tx_op(f, VSOCK_OP_RW, 6002, 997);
	rx_expect(f, VSOCK_OP_RST, 997, 6002, NULL);
	tx_op(f, VSOCK_OP_RST, 6003, 997);
	rx_none(f);
}

static void credit_limits_what_the_guest_gets(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 32);
	int s = established(f, 7000, 80, 100);
	uint8_t data[300], got[300];
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	host_write(s, data, sizeof(data));
	pump(f);

	size_t total = 0;
	struct vsock_hdr h;
	while (rx_recv(f, &h, got + total, sizeof(got) - total)) {
		assert_int_equal(h.op, VSOCK_OP_RW);
		total += h.len;
	}
	assert_int_equal(total, 100); /* the guest's buf_alloc, not a byte more */
	pump(f);
	rx_none(f);

	/* The guest consumed 100: 100 more. */
	struct vsock_hdr cu = gh(VSOCK_OP_CREDIT_UPDATE, 7000, 80);
	cu.buf_alloc = 100;
	cu.fwd_cnt = 100;
	tx_send(f, &cu, NULL);
	while (rx_recv(f, &h, got + total, sizeof(got) - total))
		total += h.len;
	assert_int_equal(total, 200);

	/* A bigger buffer: the rest. A bogus fwd_cnt (ahead of what we sent)
	 * gives nothing first. */
	cu.buf_alloc = 1000;
	cu.fwd_cnt = 5000;
	tx_send(f, &cu, NULL);
	rx_none(f);
	cu.fwd_cnt = 200;
	tx_send(f, &cu, NULL);
	while (rx_recv(f, &h, got + total, sizeof(got) - total))
		total += h.len;
	assert_int_equal(total, 300);
	assert_memory_equal(got, data, sizeof(data));

	/* A CREDIT_REQUEST gets our state. */
	tx_op(f, VSOCK_OP_CREDIT_REQUEST, 7000, 80);
	rx_expect(f, VSOCK_OP_CREDIT_UPDATE, 80, 7000, &h);
	assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC);
	close(s);
}

static void host_data_waits_for_rx_buffers(void **state)
{
	struct fake *f = *state;
	activate(f);
	int l = host_listen(f, 81);
	tx_op(f, VSOCK_OP_REQUEST, 7100, 81); /* no rx buffer: nothing yet */
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(used_idx(f, 0), 0);
	int s = host_accept(l);
	host_write(s, "abc", 3);
	pump(f);
	assert_int_equal(used_idx(f, 0), 0);
	rx_post(f, 1);
	rx_expect(f, VSOCK_OP_RESPONSE, 81, 7100, NULL);
	rx_none(f);
	rx_post(f, 1);
	pump(f);
	struct vsock_hdr h;
	char buf[8];
	assert_true(rx_recv(f, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 3);
	assert_memory_equal(buf, "abc", 3);
	/* An rx buffer too small for a header is returned empty and counted. */
	uint64_t errors = f->d.errors;
	rx_post_len(f, 1, VSOCK_HDR_SIZE - 1);
	assert_int_equal(used_idx(f, 0), f->used_seen[0] + 1);
	assert_int_equal(le32(gp(f, QBASE(0) + 0x2000 + 8 + 8 * (f->used_seen[0] % RX_QS), 4)), 0);
	f->used_seen[0]++;
	assert_int_equal(f->d.errors, errors + 1);
	close(s);
}

/* Keeps 16 rx buffers posted, takes the packets the device made; returns the
 * device's fwd_cnt from the last one (or `fwd` when none came), which must all
 * be CREDIT_UPDATEs unless `any` is set. */
static uint32_t guest_poll(struct fake *f, uint32_t fwd, uint16_t *last_op)
{
	struct vsock_hdr h;
	while (rx_recv(f, &h, NULL, 0)) {
		fwd = h.fwd_cnt;
		if (last_op)
			*last_op = h.op;
		else
			assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
	}
	while ((uint16_t)(f->avail_idx[0] - f->used_seen[0]) < 16)
		rx_post(f, 1);
	return fwd;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 31 / 7);
}

/* Sends pattern bytes from *sent as far as the credit goes (fwd: the device's
 * fwd_cnt as last heard); true when the credit ran out first. */
static bool guest_send_all(struct fake *f, uint32_t gport, uint32_t port, size_t *sent,
			   size_t total, uint32_t *fwd)
{
	static uint8_t chunk[16384];
	while (*sent < total) {
		uint32_t credit = VSOCK_BUF_ALLOC - (uint32_t)(*sent - *fwd);
		if (!credit)
			return true;
		uint32_t n = credit < sizeof(chunk) ? credit : sizeof(chunk);
		if (n > total - *sent)
			n = (uint32_t)(total - *sent);
		for (uint32_t i = 0; i < n; i++)
			chunk[i] = pattern(*sent + i);
		struct vsock_hdr rw = gh(VSOCK_OP_RW, gport, port);
		rw.len = n;
		tx_send(f, &rw, chunk);
		*sent += n;
		*fwd = guest_poll(f, *fwd, NULL);
	}
	return false;
}

/* The host reads what is there; checks the pattern. */
static size_t host_drain(int s, size_t received)
{
	static uint8_t in[65536];
	ssize_t n = host_read(s, in, sizeof(in));
	for (ssize_t i = 0; i < n; i++)
		assert_int_equal(in[i], pattern(received + (size_t)i));
	return n > 0 ? (size_t)n : 0;
}

/* The guest sends as its credit allows while the host does not read: the
 * device holds up to VSOCK_BUF_ALLOC, then the guest has no credit; as the host
 * reads, CREDIT_UPDATEs let the rest through, in order. */
static void host_backpressure_holds_guest_data(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int s = established(f, 7200, 82, GUEST_BUF);
	const size_t total = 2u << 20;
	size_t sent = 0, received = 0;
	uint32_t fwd = 0;

	/* The host reads nothing: the guest runs out of credit. */
	assert_true(guest_send_all(f, 7200, 82, &sent, total, &fwd));
	assert_true(sent < total);
	assert_int_equal(vsock_nr_conns(f->v), 1);
	size_t stalled = sent;
	pump(f);
	fwd = guest_poll(f, fwd, NULL);
	assert_true(guest_send_all(f, 7200, 82, &sent, total, &fwd));
	assert_int_equal(sent, stalled); /* nothing more while the host sleeps */

	for (int rounds = 0; received < total; rounds++) {
		assert_true(rounds < 100000);
		received += host_drain(s, received);
		pump(f);
		fwd = guest_poll(f, fwd, NULL);
		guest_send_all(f, 7200, 82, &sent, total, &fwd);
	}
	assert_int_equal(sent, total);
	assert_int_equal(f->d.errors, 0);
	close(s);
}

static void guest_over_credit_is_reset(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int s = established(f, 7300, 83, GUEST_BUF);
	size_t sent = 0;
	uint32_t fwd = 0;
	assert_true(guest_send_all(f, 7300, 83, &sent, 4u << 20, &fwd));
	uint64_t errors = f->d.errors;
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 7300, 83);
	rw.len = 1;
	tx_send(f, &rw, "y");
	rx_expect(f, VSOCK_OP_RST, 83, 7300, NULL);
	assert_int_equal(f->d.errors, errors + 1);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	/* The host sees its connection end after what the socket had. */
	size_t received = 0, n;
	while ((n = host_drain(s, received)) > 0)
		received += n;
	host_expect_eof(s);
	assert_true(received < sent);
	close(s);
}

static void host_connect_handshake(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int s = host_connect_uds(f);
	/* What follows the line on the same write is data for the guest. */
	host_write(s, "CONNECT 52\nearly", 16);
	pump(f);
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 52);
	assert_true(h.src_port >= VSOCK_LOCAL_PORT_FIRST);
	assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC);
	uint32_t local = h.src_port;
	rx_none(f);
	char buf[64];
	assert_int_equal(host_read(s, buf, sizeof(buf)), -1); /* no OK before the guest answers */

	tx_op(f, VSOCK_OP_RESPONSE, 52, local);
	char ok[32];
	snprintf(ok, sizeof(ok), "OK %u\n", local);
	host_expect(s, ok);
	assert_true(rx_recv(f, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.src_port, local);
	assert_int_equal(h.dst_port, 52);
	assert_int_equal(h.len, 5);
	assert_memory_equal(buf, "early", 5);

	struct vsock_hdr rw = gh(VSOCK_OP_RW, 52, local);
	rw.len = 4;
	tx_send(f, &rw, "pong");
	host_expect(s, "pong");

	/* A second host connection to the same guest port gets another local port. */
	int s2 = host_connect_uds(f);
	host_write(s2, "CONNECT 52\n", 11);
	pump(f);
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_not_equal(h.src_port, local);
	assert_int_equal(vsock_nr_conns(f->v), 2);
	close(s);
	close(s2);
}

static void host_connect_refused_by_guest(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int s = host_connect_uds(f);
	host_write(s, "CONNECT 53\n", 11);
	pump(f);
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	tx_op(f, VSOCK_OP_RST, 53, h.src_port);
	host_expect_eof(s);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	rx_none(f);
	close(s);
}

/* The host process gives up before the guest answered: the guest hears RST
 * when it saw the REQUEST, nothing when it did not. */
static void host_gives_up_while_connecting(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 4);
	int s = host_connect_uds(f);
	host_write(s, "CONNECT 54\n", 11);
	pump(f);
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	close(s);
	pump(f);
	rx_expect(f, VSOCK_OP_RST, h.src_port, 54, NULL);
	assert_int_equal(vsock_nr_conns(f->v), 0);

	/* No rx buffer: the REQUEST never left, nothing to take back. */
	while (f->avail_idx[0] != used_idx(f, 0)) {
		struct vsock_hdr cr = gh(VSOCK_OP_REQUEST, 1, 999);
		tx_send(f, &cr, NULL);
		rx_expect(f, VSOCK_OP_RST, 999, 1, NULL);
	}
	s = host_connect_uds(f);
	host_write(s, "CONNECT 55\n", 11);
	pump(f);
	assert_int_equal(vsock_nr_conns(f->v), 1);
	shutdown(s, SHUT_WR); /* a half-close counts as giving up too */
	pump(f);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	rx_post(f, 4);
	rx_none(f);
	close(s);
}

static void host_connect_bad_lines_close(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	const char *bad[] = {"HELLO\n", "CONNECT\n", "CONNECT x\n", "CONNECT 4294967296\n",
			     "CONNECT 52 \n", "connect 52\n",
			     "CONNECT 5555555555555555555555555555555555555\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int s = host_connect_uds(f);
		host_write(s, bad[i], strlen(bad[i]));
		pump(f);
		host_expect_eof(s);
		close(s);
	}
	/* A line longer than any CONNECT, no newline yet: closed. */
	int l = host_connect_uds(f);
	host_write(l, "CONNECT 1234567890123456789012345678", 36);
	pump(f);
	host_expect_eof(l);
	close(l);
	/* A host that connects and goes away before its line. */
	int s = host_connect_uds(f);
	host_write(s, "CONN", 4);
	pump(f);
	assert_int_equal(vsock_nr_conns(f->v), 1);
	close(s);
	pump(f);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	rx_none(f);
	/* The largest port is fine. */
	s = host_connect_uds(f);
	host_write(s, "CONNECT 4294967295\n", 19);
	pump(f);
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 4294967295u);
	close(s);
}

static void malformed_headers(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 32);
	struct vsock_hdr h;
	uint64_t errors = 0;

	/* From another CID, or not for the host: dropped, counted, no answer. */
	h = gh(VSOCK_OP_REQUEST, 1, 2);
	h.src_cid = 4;
	tx_send(f, &h, NULL);
	assert_int_equal(f->d.errors, ++errors);
	h = gh(VSOCK_OP_REQUEST, 1, 2);
	h.src_cid = CID | (1ULL << 32); /* the upper half counts too */
	tx_send(f, &h, NULL);
	assert_int_equal(f->d.errors, ++errors);
	h = gh(VSOCK_OP_REQUEST, 1, 2);
	h.dst_cid = 1;
	tx_send(f, &h, NULL);
	assert_int_equal(f->d.errors, ++errors);
	rx_none(f);

	/* Not a stream: RST. */
	h = gh(VSOCK_OP_REQUEST, 10, 20);
	h.type = 2;
	tx_send(f, &h, NULL);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 20, 10, NULL);

	/* len beyond 64 KiB, or beyond the chain: RST, nothing read past it. */
	h = gh(VSOCK_OP_RW, 11, 21);
	h.len = VSOCK_MAX_PAYLOAD + 1;
	tx_hdr(f, &h, NULL, 0);
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 21, 11, NULL);
	h.len = 100;
	tx_hdr(f, &h, "0123456789", 10);
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 21, 11, NULL);
	h.len = 0xffffffffu;
	tx_hdr(f, &h, NULL, 0);
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 21, 11, NULL);

	/* A header shorter than 44 bytes: dropped. */
	uint8_t raw[VSOCK_HDR_SIZE];
	h = gh(VSOCK_OP_REQUEST, 12, 22);
	vsock_hdr_encode(&h, raw);
	tx_raw(f, raw, 20, NULL, 0);
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->d.errors, ++errors);
	rx_none(f);

	/* A header split over two buffers is fine: 30 + 14 bytes. */
	int l = host_listen(f, 22);
	tx_raw(f, raw, 30, raw + 30, 14);
	notify(f, VSOCK_QUEUE_TX);
	rx_expect(f, VSOCK_OP_RESPONSE, 22, 12, NULL);
	int s = host_accept(l);

	/* Unknown op on a connection: RST, the host socket closes. */
	h = gh(99, 12, 22);
	tx_send(f, &h, NULL);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 22, 12, NULL);
	host_expect_eof(s);
	close(s);
	/* Unknown op, no connection: RST. */
	h = gh(0, 13, 23);
	tx_send(f, &h, NULL);
	rx_expect(f, VSOCK_OP_RST, 23, 13, NULL);

	/* An oversize len on a live connection resets it. */
	s = established(f, 14, 24, GUEST_BUF);
	h = gh(VSOCK_OP_RW, 14, 24);
	h.len = 5000;
	tx_hdr(f, &h, "short", 5);
	notify(f, VSOCK_QUEUE_TX);
	pump(f);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 24, 14, NULL);
	host_expect_eof(s);
	close(s);

	/* RW before the guest accepted a host connection: reset. */
	int hs = host_connect_uds(f);
	host_write(hs, "CONNECT 25\n", 11);
	pump(f);
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	uint32_t local = h.src_port;
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 25, local);
	rw.len = 2;
	tx_send(f, &rw, "hi");
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, local, 25, NULL);
	host_expect_eof(hs);
	close(hs);

	/* A REQUEST for a live connection resets it. */
	s = established(f, 15, 26, GUEST_BUF);
	tx_op(f, VSOCK_OP_REQUEST, 15, 26);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 26, 15, NULL);
	close(s);

	/* A RESPONSE nobody asked for. */
	s = established(f, 16, 27, GUEST_BUF);
	tx_op(f, VSOCK_OP_RESPONSE, 16, 27);
	assert_int_equal(f->d.errors, ++errors);
	rx_expect(f, VSOCK_OP_RST, 27, 16, NULL);
	close(s);

	/* After all that the device still works. */
	assert_int_equal(f->needs_reset, 0);
	s = established(f, 17, 28, GUEST_BUF);
	h = gh(VSOCK_OP_RW, 17, 28);
	h.len = 2;
	tx_send(f, &h, "ok");
	host_expect(s, "ok");
	close(s);
}

static void broken_queue_needs_reset(void **state)
{
	struct fake *f = *state;
	activate(f);
	/* A tx descriptor outside guest RAM. */
	desc(f, 1, 0, RAM + 0x1000, 44, 0, 0);
	avail_add(f, 1, 0);
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->needs_reset, 1);
	/* Quiet afterwards, until a reset. */
	notify(f, VSOCK_QUEUE_TX);
	assert_int_equal(f->needs_reset, 1);
	lock(f);
	vsock_ops.reset(&f->d);
	unlock(f);
	activate(f);
	rx_post(f, 4);
	tx_op(f, VSOCK_OP_REQUEST, 1, 2);
	rx_expect(f, VSOCK_OP_RST, 2, 1, NULL);
}

static void guest_half_close(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 32);
	int s = established(f, 8000, 90, GUEST_BUF);
	struct vsock_hdr h;

	/* The guest is done sending: the host reads its data, then EOF, and can
	 * still write. */
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 8000, 90);
	rw.len = 3;
	tx_send(f, &rw, "bye");
	h = gh(VSOCK_OP_SHUTDOWN, 8000, 90);
	h.flags = VSOCK_SHUTDOWN_SEND;
	tx_send(f, &h, NULL);
	host_expect(s, "bye");
	host_expect_eof(s);
	host_write(s, "more", 4);
	pump(f);
	char buf[8];
	assert_true(rx_recv(f, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "more", 4);
	assert_int_equal(vsock_nr_conns(f->v), 1);

	/* Data after the guest's SHUTDOWN(SEND) is a protocol error. */
	rw.len = 1;
	tx_send(f, &rw, "z");
	rx_expect(f, VSOCK_OP_RST, 90, 8000, NULL);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	close(s);
}

static void host_half_close(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 32);
	int s = established(f, 8001, 91, GUEST_BUF);
	struct vsock_hdr h;

	/* The host is done sending: SHUTDOWN(SEND) only, the guest still talks. */
	shutdown(s, SHUT_WR);
	pump(f);
	rx_expect(f, VSOCK_OP_SHUTDOWN, 91, 8001, &h);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	rx_none(f);
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 8001, 91);
	rw.len = 5;
	tx_send(f, &rw, "still");
	host_expect(s, "still");

	/* The guest closes: it gets the RST it waits for; the host sees EOF. */
	h = gh(VSOCK_OP_SHUTDOWN, 8001, 91);
	h.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
	tx_send(f, &h, NULL);
	rx_expect(f, VSOCK_OP_RST, 91, 8001, NULL);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	host_expect_eof(s);
	close(s);
}

static void host_close_and_guest_rcv_shutdown(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 32);
	struct vsock_hdr h;
	char buf[8];

	/* The host closes outright: its data, then SHUTDOWN with both flags. */
	int s = established(f, 8002, 92, GUEST_BUF);
	host_write(s, "last", 4);
	close(s);
	pump(f);
	assert_true(rx_recv(f, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "last", 4);
	rx_expect(f, VSOCK_OP_SHUTDOWN, 92, 8002, &h);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
	rx_none(f);
	tx_op(f, VSOCK_OP_RST, 8002, 92);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	rx_none(f);

	/* The guest will not receive: host data stays in the host socket. */
	s = established(f, 8003, 93, GUEST_BUF);
	h = gh(VSOCK_OP_SHUTDOWN, 8003, 93);
	h.flags = VSOCK_SHUTDOWN_RCV;
	tx_send(f, &h, NULL);
	host_write(s, "unread", 6);
	pump(f);
	rx_none(f);
	struct vsock_hdr rw = gh(VSOCK_OP_RW, 8003, 93);
	rw.len = 2;
	tx_send(f, &rw, "ok"); /* the other way still works */
	host_expect(s, "ok");
	tx_op(f, VSOCK_OP_RST, 8003, 93);
	host_expect_eof(s);
	close(s);

	/* Host data already seen as readable when the guest stops receiving,
	 * while it has no rx buffer: none goes, nothing spins. */
	s = established(f, 8004, 94, GUEST_BUF);
	while (f->avail_idx[0] != used_idx(f, 0)) {
		struct vsock_hdr junk = gh(VSOCK_OP_CREDIT_REQUEST, 8004, 94);
		tx_send(f, &junk, NULL);
		rx_expect(f, VSOCK_OP_CREDIT_UPDATE, 94, 8004, NULL);
	}
	host_write(s, "pending", 7);
	pump(f);
	h = gh(VSOCK_OP_SHUTDOWN, 8004, 94);
	h.flags = VSOCK_SHUTDOWN_RCV;
	tx_send(f, &h, NULL);
	rx_post(f, 4);
	pump(f);
	rx_none(f);
	close(s);
}

/* Guest data held while the host socket is full still reaches the host before
 * the guest's close turns into EOF and RST. */
static void close_flushes_held_data(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int s = established(f, 8100, 94, GUEST_BUF);
	size_t sent = 0, received = 0;
	uint32_t fwd = 0;
	assert_true(guest_send_all(f, 8100, 94, &sent, 4u << 20, &fwd));
	struct vsock_hdr h = gh(VSOCK_OP_SHUTDOWN, 8100, 94);
	h.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
	tx_send(f, &h, NULL);
	rx_none(f); /* no RST while data waits */
	uint16_t last = 0;
	for (int i = 0; i < 100000; i++) {
		char c;
		if (recv(s, &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0)
			break; /* EOF */
		received += host_drain(s, received);
		pump(f);
		guest_poll(f, 0, &last);
	}
	assert_int_equal(received, sent);
	assert_int_equal(last, VSOCK_OP_RST);
	assert_int_equal(vsock_nr_conns(f->v), 0);
	close(s);
}

static void connection_table_is_bounded(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	vsock_set_max_conns(f->v, 2);
	int a = established(f, 9000, 100, GUEST_BUF);
	int b = established(f, 9001, 101, GUEST_BUF);
	host_listen(f, 102);
	tx_op(f, VSOCK_OP_REQUEST, 9002, 102);
	rx_expect(f, VSOCK_OP_RST, 102, 9002, NULL);
	/* Host side: refused at once. */
	int s = host_connect_uds(f);
	pump(f);
	host_expect_eof(s);
	close(s);
	assert_int_equal(vsock_nr_conns(f->v), 2);
	/* One goes, another fits. */
	tx_op(f, VSOCK_OP_RST, 9000, 100);
	tx_op(f, VSOCK_OP_REQUEST, 9002, 102);
	rx_expect(f, VSOCK_OP_RESPONSE, 102, 9002, NULL);
	close(a);
	close(b);
}

static void reset_closes_everything(void **state)
{
	struct fake *f = *state;
	activate(f);
	rx_post(f, 16);
	int a = established(f, 9100, 110, GUEST_BUF);
	int b = host_connect_uds(f);
	host_write(b, "CONNECT 7\n", 10);
	pump(f);
	int c = host_connect_uds(f); /* still in its handshake */
	pump(f);
	assert_int_equal(vsock_nr_conns(f->v), 3);
	lock(f);
	vsock_ops.reset(&f->d);
	unlock(f);
	for (unsigned q = 0; q < 3; q++) {
		vq_reset(&f->vq[q]);
		f->ready[q] = false;
	}
	assert_int_equal(vsock_nr_conns(f->v), 0);
	assert_int_equal(f->nr_w, 0);
	host_expect_eof(a);
	host_expect_eof(b);
	host_expect_eof(c);
	/* Host connections wait in the listener until the driver is back. */
	int d = host_connect_uds(f);
	host_write(d, "CONNECT 8\n", 10);
	pump(f);
	activate(f);
	rx_post(f, 4);
	pump(f);
	struct vsock_hdr h;
	assert_true(rx_recv(f, &h, NULL, 0));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 8);
	close(a);
	close(b);
	close(c);
	close(d);
}

/* Packets that need a RST answer while the guest gives no rx buffer: the
 * device stops reading the tx queue rather than queueing without bound. */
static void rst_backlog_stops_tx(void **state)
{
	struct fake *f = *state;
	activate(f);
	unsigned posted = 0;
	for (int batch = 0; batch < 8; batch++) {
		for (unsigned i = 0; i < TX_SLOTS && (uint16_t)(f->avail_idx[1] - used_idx(f, 1)) < TX_SLOTS;
		     i++) {
			struct vsock_hdr h = gh(VSOCK_OP_REQUEST, 20000 + posted, 5);
			tx_hdr(f, &h, NULL, 0);
			posted++;
		}
		notify(f, VSOCK_QUEUE_TX);
	}
	uint16_t done = used_idx(f, 1);
	assert_int_equal(posted, 80);
	assert_int_equal(done, 64); /* the RST ring's size: the rest wait */
	/* rx buffers: every RST comes, and the waiting packets get theirs. */
	unsigned rsts = 0;
	for (int i = 0; i < 100 && rsts < posted; i++) {
		rx_post(f, 16);
		struct vsock_hdr h;
		while (rx_recv(f, &h, NULL, 0)) {
			assert_int_equal(h.op, VSOCK_OP_RST);
			assert_int_equal(h.dst_port, 20000 + rsts);
			rsts++;
		}
	}
	assert_int_equal(rsts, posted);
	assert_int_equal(used_idx(f, 1), posted);
}

/* ---- set-up errors ---- */

static int bare_setup(void **state)
{
	char *dir = calloc(1, 64);
	if (!dir)
		return -1;
	snprintf(dir, 64, "/tmp/kite-vsock-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int bare_teardown(void **state)
{
	rm_dir(*state);
	free(*state);
	return 0;
}

static struct vsock *try_new(uint32_t cid, const char *path, struct kite_err *err)
{
	struct vsock_config cfg = {.enabled = true, .cid = cid, .uds_path = path};
	memset(err, 0, sizeof(*err));
	return vsock_new(&cfg, &fake_env, err);
}

static void expect_error(uint32_t cid, const char *path, const char *needle)
{
	struct kite_err err;
	struct vsock *v = try_new(cid, path, &err);
	assert_null(v);
	assert_int_equal(err.code, KITE_EXIT_ERROR);
	if (!strstr(err.msg, needle))
		print_error("message '%s' lacks '%s'\n", err.msg, needle);
	assert_non_null(strstr(err.msg, needle));
	assert_null(strchr(err.msg, '\n'));
}

static void uds_path_errors(void **state)
{
	const char *dir = *state;
	char path[256];

	snprintf(path, sizeof(path), "%s/missing/v.sock", dir);
	expect_error(3, path, "does not exist");
	expect_error(3, path, "/missing'");

	snprintf(path, sizeof(path), "%s/file", dir);
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	expect_error(3, path, "not a socket");
	struct stat st;
	assert_int_equal(stat(path, &st), 0); /* left alone */

	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	expect_error(3, longp, "too long");
	expect_error(3, "", "empty");

	snprintf(path, sizeof(path), "%s/v.sock", dir);
	expect_error(2, path, "CID 2");
	expect_error(0, path, "CID 0");
	expect_error(UINT32_MAX, path, "reserved");

	/* In use by a live listener: refused, the file stays. */
	struct kite_err err;
	struct vsock *v = try_new(3, path, &err);
	assert_non_null(v);
	expect_error(4, path, "in use");
	assert_int_equal(stat(path, &st), 0);
	/* Freed: the socket file goes. */
	vsock_free(v);
	assert_int_equal(stat(path, &st), -1);

	/* A stale socket file (nobody listens) is replaced. */
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = unix_addr(path);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	assert_int_equal(stat(path, &st), 0);
	v = try_new(3, path, &err);
	assert_non_null(v);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	vsock_free(v);
}

/* ---- snapshots ----
 * Connections are not carried over (Firecracker's way): the restored device
 * tells the driver with one TRANSPORT_RESET event, as soon as the guest has an
 * event buffer; the guest CID it saw must be this device's. */
#define EVBUF 0x300000ULL

static void snapshot_sends_transport_reset(void **state)
{
	struct fake *f = *state;
	activate(f);
	f->d.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
	struct kite_err err = {0};
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "VIRT", 0);
	lock(f);
	vsock_ops.quiesce(&f->d);
	assert_int_equal(vsock_ops.save(&f->d, &w, &err), 0);
	unlock(f);
	snapw_end(&w);
	struct snap_reader r;
	snap_test_reopen(&w, &r);

	/* The device as a fresh process has it, then restored and activated. */
	lock(f);
	vsock_ops.reset(&f->d);
	unlock(f);
	struct snap_cursor c;
	assert_true(snapr_find(&r, "VIRT", 0, &c));
	lock(f);
	assert_int_equal(vsock_ops.restore(&f->d, &c, &err), 0);
	unlock(f);
	assert_true(snapc_done(&c));
	activate(f); /* no event buffer yet: the reset stays owed */
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 0);
	memset(gp(f, EVBUF, 8), 0xff, 8);
	desc(f, VSOCK_QUEUE_EVENT, 0, EVBUF, 4, VQ_DESC_F_WRITE, 0);
	avail_add(f, VSOCK_QUEUE_EVENT, 0);
	notify(f, VSOCK_QUEUE_EVENT);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 1);
	uint64_t used = QBASE(VSOCK_QUEUE_EVENT) + 0x2000;
	assert_int_equal(le32(gp(f, used + 4, 4)), 0);        /* id: descriptor 0 */
	assert_int_equal(le32(gp(f, used + 8, 4)), 4);        /* len */
	assert_int_equal(le32(gp(f, EVBUF, 4)), 0);           /* TRANSPORT_RESET */
	assert_int_equal(f->signals[VSOCK_QUEUE_EVENT], 1);
	/* Once only. */
	desc(f, VSOCK_QUEUE_EVENT, 1, EVBUF + 0x100, 4, VQ_DESC_F_WRITE, 0);
	avail_add(f, VSOCK_QUEUE_EVENT, 1);
	notify(f, VSOCK_QUEUE_EVENT);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 1);

	/* Another CID than the guest saw: refused. */
	size_t len;
	uint8_t *p = snap_test_payload(&r, "VIRT", 0, &len);
	assert_int_equal(len, 8);
	p[0] ^= 0x40;
	assert_true(snapr_find(&r, "VIRT", 0, &c));
	err = (struct kite_err){0};
	lock(f);
	assert_int_equal(vsock_ops.restore(&f->d, &c, &err), -1);
	unlock(f);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "CID"));
	snapr_free(&r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(device_identity_and_config),
		T(snapshot_sends_transport_reset),
		cmocka_unit_test(header_wire_layout),
		T(guest_connect_and_data_both_ways),
		T(no_listener_gets_rst),
		T(credit_limits_what_the_guest_gets),
		T(host_data_waits_for_rx_buffers),
		T(host_backpressure_holds_guest_data),
		T(guest_over_credit_is_reset),
		T(host_connect_handshake),
		T(host_connect_refused_by_guest),
		T(host_gives_up_while_connecting),
		T(host_connect_bad_lines_close),
		T(malformed_headers),
		T(broken_queue_needs_reset),
		T(guest_half_close),
		T(host_half_close),
		T(host_close_and_guest_rcv_shutdown),
		T(close_flushes_held_data),
		T(connection_table_is_bounded),
		T(reset_closes_everything),
		T(rst_backlog_stops_tx),
		cmocka_unit_test_setup_teardown(uds_path_errors, bare_setup, bare_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
