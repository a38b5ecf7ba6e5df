/* virtio-net's rx and tx paths against a fake driver: the test writes chains
 * into a malloc'd guest memory as a driver would, and a SOCK_SEQPACKET
 * socketpair stands in for the TAP (it keeps frame boundaries the same way,
 * and hangs up when the other end goes). The device
 * is driven through its ops and its backend callback, as the event thread and
 * the transport would. */
#include "unit.h"

#include <errno.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snap_test.h"
#include "stats/stats.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

#define RAM (4ULL << 20)
#define QSZ 256
#define DATA 0x100000ULL

/* Queue q's rings: descriptors at QBASE(q), available ring +0x1000, used +0x2000. */
#define QBASE(q) (0x10000ULL + 0x10000ULL * (q))

struct fx {
	struct gmem m;
	uint8_t *ram;
	struct virtio_dev d;
	struct net_dev *n;
	int peer;               /* the host side of the "TAP" */
	uint16_t avail[2];      /* the driver's avail idx per queue */
	uint16_t next_desc[2];
	uint64_t data;          /* next free guest buffer */
};

static const uint8_t MAC[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static uint8_t *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&f->m, gpa, len);
	assert_non_null(p);
	return p;
}

static void queue_start(struct fx *f, unsigned q)
{
	struct virtio_queue *vq = &f->d.queues[q];
	struct vq_config c = {.size = QSZ, .desc = QBASE(q), .avail = QBASE(q) + 0x1000,
			      .used = QBASE(q) + 0x2000, .event_idx = false, .indirect = false};
	assert_int_equal(vq_init(&vq->vq, &f->m, &c), 0);
	vq->size = QSZ;
	vq->desc = c.desc;
	vq->avail = c.avail;
	vq->used = c.used;
	vq->enabled = true;
	vq->ready = true;
	vq->kick_fd = -1;
	/* No used-buffer interrupts: there is no transport behind this device
	 * to deliver them. signalled() tells whether the device asked. */
	set16(gp(f, c.avail, 2), VQ_AVAIL_F_NO_INTERRUPT);
}

/* Whether the device called virtio_dev_signal() after its last push on q:
 * vq_should_notify() moves signalled_used up to the used index. */
static bool signalled(struct fx *f, unsigned q)
{
	const struct vq *vq = &f->d.queues[q].vq;
	return vq->signalled_valid && vq->signalled_used == vq->used_idx;
}

/* A device that the driver set up with these features, queues ready,
 * DRIVER_OK, activated. */
static void fx_start(struct fx *f, uint64_t features)
{
	f->d.guest_features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | features;
	f->d.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	queue_start(f, NET_RXQ);
	queue_start(f, NET_TXQ);
	assert_int_equal(net_ops.activate(&f->d), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f || test_ram_init(&f->m, &f->ram, RAM, 0, RAM) < 0)
		return -1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	/* Room for a 64 KiB frame each way. */
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	f->peer = sv[1];
	f->n = net_dev_new(sv[0], false, MAC, "net0");
	if (!f->n)
		return -1;
	f->d.ops = &net_ops;
	f->d.priv = f->n;
	snprintf(f->d.name, sizeof(f->d.name), "virtio-net0");
	/* As the transport makes it: recursive, so watch calls work under it. */
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&f->d.lock, &ma);
	pthread_mutexattr_destroy(&ma);
	f->d.epfd = epoll_create1(EPOLL_CLOEXEC);
	f->d.stop_fd = -1;
	f->d.host_features = NET_FEATURES_BASE | NET_FEATURES_GUEST_OFFLOADS;
	f->data = DATA;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->n->active)
		net_ops.reset(&f->d);
	assert_false(f->n->watching);
	assert_null(f->d.watches);
	net_ops.destroy(&f->d);
	close(f->peer);
	close(f->d.epfd);
	pthread_mutex_destroy(&f->d.lock);
	test_ram_free(&f->m, f->ram);
	free(f);
	return 0;
}

/* ---- the fake driver ---- */

static uint64_t buf_alloc(struct fx *f, uint32_t len)
{
	uint64_t a = f->data;
	f->data += (len + 15) & ~15ULL;
	assert_true(f->data <= RAM);
	return a;
}

/* Makes a chain of nr buffers (lens[i] bytes at addrs[i], allocated here; the
 * first nr_read device-readable) available on queue q. Returns the head. */
static uint16_t chain_add(struct fx *f, unsigned q, const uint32_t *lens, unsigned nr,
			  unsigned nr_read, uint64_t *addrs)
{
	uint16_t head = f->next_desc[q];
	for (unsigned i = 0; i < nr; i++) {
		uint16_t di = (uint16_t)((head + i) % QSZ);
		uint64_t a = buf_alloc(f, lens[i]);
		if (addrs)
			addrs[i] = a;
		uint8_t *p = gp(f, QBASE(q) + 16ULL * di, 16);
		uint16_t flags = (i + 1 < nr ? VQ_DESC_F_NEXT : 0) | (i >= nr_read ? VQ_DESC_F_WRITE : 0);
		set64(p, a);
		set32(p + 8, lens[i]);
		set16(p + 12, flags);
		set16(p + 14, (uint16_t)((di + 1) % QSZ));
	}
	f->next_desc[q] = (uint16_t)((head + nr) % QSZ);
	uint64_t avail = QBASE(q) + 0x1000;
	set16(gp(f, avail + 4 + 2 * (f->avail[q] % QSZ), 2), head);
	f->avail[q]++;
	set16(gp(f, avail + 2, 2), f->avail[q]);
	return head;
}

/* One rx buffer of len bytes. */
static uint16_t rx_add(struct fx *f, uint32_t len, uint64_t *addr)
{
	return chain_add(f, NET_RXQ, &len, 1, 0, addr);
}

static uint16_t used_idx(struct fx *f, unsigned q)
{
	return le16(gp(f, QBASE(q) + 0x2000 + 2, 2));
}

static uint32_t used_id(struct fx *f, unsigned q, uint16_t i)
{
	return le32(gp(f, QBASE(q) + 0x2000 + 4 + 8 * (i % QSZ), 4));
}

static uint32_t used_len(struct fx *f, unsigned q, uint16_t i)
{
	return le32(gp(f, QBASE(q) + 0x2000 + 8 + 8 * (i % QSZ), 4));
}

/* The transport's calls, with the device lock held as it holds it. */
static void kick(struct fx *f, unsigned q)
{
	pthread_mutex_lock(&f->d.lock);
	net_ops.notify(&f->d, q);
	pthread_mutex_unlock(&f->d.lock);
}

static void backend_event(struct fx *f, uint32_t events)
{
	pthread_mutex_lock(&f->d.lock);
	net_backend_ready(&f->d, f->n, events);
	pthread_mutex_unlock(&f->d.lock);
}

/* The event thread's view: what epoll reports for the device's fds now. */
static uint32_t ready_events(struct fx *f)
{
	struct epoll_event ev;
	int r = epoll_wait(f->d.epfd, &ev, 1, 0);
	assert_true(r >= 0);
	return r ? ev.events : 0;
}

/* A frame as the host sends it: a header (flags, gso_type) and len - 12
 * bytes of a pattern that starts at seed. */
static void frame_make(uint8_t *p, size_t len, uint8_t flags, uint8_t gso, uint8_t seed)
{
	memset(p, 0, NET_HDR_LEN);
	p[0] = flags;
	p[1] = gso;
	for (size_t i = NET_HDR_LEN; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void host_send(struct fx *f, const uint8_t *p, size_t len)
{
	assert_int_equal(send(f->peer, p, len, 0), (ssize_t)len);
}

static void host_send_frame(struct fx *f, size_t len, uint8_t seed)
{
	uint8_t *p = malloc(len);
	assert_non_null(p);
	frame_make(p, len, 0, 0, seed);
	host_send(f, p, len);
	free(p);
}

/* The next frame the device sent to the host, or -1 when none. */
static ssize_t host_recv(struct fx *f, uint8_t *p, size_t cap)
{
	ssize_t r = recv(f->peer, p, cap, 0);
	if (r < 0)
		assert_true(errno == EAGAIN);
	return r;
}

static bool needs_reset(struct fx *f)
{
	return f->d.status & VIRTIO_STATUS_NEEDS_RESET;
}

/* ---- transmit ---- */

static void tx_frame_spanning_buffers(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	/* header alone, then the frame in two pieces, then a writable
	 * buffer the device must ignore */
	uint32_t lens[4] = {NET_HDR_LEN, 100, 50, 64};
	uint64_t a[4];
	uint16_t head = chain_add(f, NET_TXQ, lens, 4, 3, a);
	uint8_t want[NET_HDR_LEN + 150];
	frame_make(want, sizeof(want), 0, 0, 3);
	memcpy(gp(f, a[0], 12), want, 12);
	memcpy(gp(f, a[1], 100), want + 12, 100);
	memcpy(gp(f, a[2], 50), want + 112, 50);

	kick(f, NET_TXQ);
	uint8_t got[256];
	assert_int_equal(host_recv(f, got, sizeof(got)), sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(host_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, NET_TXQ), 1);
	assert_int_equal(used_id(f, NET_TXQ, 0), head);
	assert_int_equal(used_len(f, NET_TXQ, 0), 0);
	assert_int_equal(f->n->tx_frames, 1);
	assert_int_equal(f->n->tx_bytes, 150);
	assert_true(signalled(f, NET_TXQ));
	assert_false(f->n->tx_pending);
	assert_false(f->n->events & EPOLLOUT);
}

static void tx_header_too_short(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	uint32_t shortlen = NET_HDR_LEN - 1;
	uint16_t bad = chain_add(f, NET_TXQ, &shortlen, 1, 1, NULL);
	/* a header split 6 + 5 is still too short */
	uint32_t split[2] = {6, 5};
	uint16_t bad2 = chain_add(f, NET_TXQ, split, 2, 2, NULL);
	uint32_t ok = 60;
	uint64_t a;
	uint16_t good = chain_add(f, NET_TXQ, &ok, 1, 1, &a);
	frame_make(gp(f, a, ok), ok, 0, 0, 9);

	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), 3);
	assert_int_equal(used_id(f, NET_TXQ, 0), bad);
	assert_int_equal(used_id(f, NET_TXQ, 1), bad2);
	assert_int_equal(used_len(f, NET_TXQ, 0), 0);
	assert_int_equal(used_id(f, NET_TXQ, 2), good);
	assert_int_equal(f->n->bad_chains, 2);
	assert_int_equal(f->d.errors, 2);
	assert_false(needs_reset(f));
	/* only the good frame reached the host */
	uint8_t got[128];
	assert_int_equal(host_recv(f, got, sizeof(got)), ok);
	assert_int_equal(host_recv(f, got, sizeof(got)), -1);
	assert_int_equal(f->n->tx_frames, 1);
}

/* A frame longer than the largest the TAP takes (64 KiB GSO and headers) is
 * dropped like a short one; the largest passes. */
static void tx_frame_too_long(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	uint32_t lens[2] = {NET_HDR_LEN, NET_MAX_FRAME - NET_HDR_LEN};
	uint64_t a[2];
	chain_add(f, NET_TXQ, lens, 2, 2, a);
	memset(gp(f, a[0], NET_HDR_LEN), 0, NET_HDR_LEN);
	lens[1]++;
	uint16_t bad = chain_add(f, NET_TXQ, lens, 2, 2, a);
	memset(gp(f, a[0], NET_HDR_LEN), 0, NET_HDR_LEN);
	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), 2);
	assert_int_equal(used_id(f, NET_TXQ, 1), bad);
	assert_int_equal(f->n->bad_chains, 1);
	assert_int_equal(f->n->tx_frames, 1);
	uint8_t *got = malloc(NET_MAX_FRAME + 16);
	assert_non_null(got);
	assert_int_equal(host_recv(f, got, NET_MAX_FRAME + 16), NET_MAX_FRAME);
	assert_int_equal(host_recv(f, got, NET_MAX_FRAME + 16), -1);
	free(got);
}

/* Fills the device's socket until a send would block: the TAP's queue is full. */
static unsigned backend_fill(struct fx *f)
{
	uint8_t b[NET_HDR_LEN] = {0};
	unsigned n = 0;
	while (send(f->n->fd, b, sizeof(b), 0) == sizeof(b))
		assert_true(++n < 100000);
	assert_true(errno == EAGAIN);
	return n;
}

static void host_drain(struct fx *f, unsigned n, size_t len)
{
	uint8_t b[64];
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(host_recv(f, b, sizeof(b)), len);
}

static void tx_eagain_backpressure(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	unsigned filled = backend_fill(f);
	uint32_t len = 40;
	uint64_t a1, a2;
	uint16_t h1 = chain_add(f, NET_TXQ, &len, 1, 1, &a1);
	frame_make(gp(f, a1, len), len, 0, 0, 1);
	kick(f, NET_TXQ);
	/* kept, not dropped, not pushed; waiting for EPOLLOUT */
	assert_true(f->n->tx_pending);
	assert_int_equal(used_idx(f, NET_TXQ), 0);
	assert_int_equal(f->n->tx_dropped, 0);
	assert_true(f->n->events & EPOLLOUT);
	assert_true(f->n->tx_eagain >= 1);
	/* no busy loop: the full backend is not reported writable */
	assert_int_equal(ready_events(f) & EPOLLOUT, 0);

	/* a later chain and kick change nothing: order is kept */
	uint16_t h2 = chain_add(f, NET_TXQ, &len, 1, 1, &a2);
	frame_make(gp(f, a2, len), len, 0, 0, 2);
	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), 0);

	/* the host drains its queue: EPOLLOUT fires, both frames go, in order */
	host_drain(f, filled, NET_HDR_LEN);
	assert_true(ready_events(f) & EPOLLOUT);
	backend_event(f, EPOLLOUT);
	assert_int_equal(used_idx(f, NET_TXQ), 2);
	assert_int_equal(used_id(f, NET_TXQ, 0), h1);
	assert_int_equal(used_id(f, NET_TXQ, 1), h2);
	uint8_t got[64], want[40];
	frame_make(want, len, 0, 0, 1);
	assert_int_equal(host_recv(f, got, sizeof(got)), len);
	assert_memory_equal(got, want, len);
	frame_make(want, len, 0, 0, 2);
	assert_int_equal(host_recv(f, got, sizeof(got)), len);
	assert_memory_equal(got, want, len);
	/* and EPOLLOUT is no longer watched */
	assert_false(f->n->tx_pending);
	assert_false(f->n->events & EPOLLOUT);
	assert_int_equal(ready_events(f) & EPOLLOUT, 0);
	assert_int_equal(f->n->tx_dropped, 0);
}

/* A guest that keeps its tx ring full does not hold the device: after a batch
 * the device yields and comes back on EPOLLOUT. */
static void tx_batch_yields(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	uint32_t len = NET_HDR_LEN + 1;
	for (unsigned i = 0; i < NET_BATCH + 10; i++) {
		uint64_t a;
		chain_add(f, NET_TXQ, &len, 1, 1, &a);
		memset(gp(f, a, len), 0, len);
	}
	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), NET_BATCH);
	assert_true(f->n->tx_more);
	assert_true(f->n->events & EPOLLOUT);
	/* the host reads as it goes, so the socket queue does not fill */
	host_drain(f, NET_BATCH, len);
	backend_event(f, EPOLLOUT);
	assert_int_equal(used_idx(f, NET_TXQ), NET_BATCH + 10);
	assert_false(f->n->tx_more);
	assert_false(f->n->events & EPOLLOUT);
	host_drain(f, 10, len);
}

/* ---- receive ---- */

static void rx_mergeable_spans_chains(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a[3];
	uint16_t h[3];
	for (int i = 0; i < 3; i++)
		h[i] = rx_add(f, 1000, &a[i]);
	memset(gp(f, a[0], 3000), 0xee, 3000); /* stale bytes */
	enum { LEN = 2500 };
	uint8_t want[LEN];
	frame_make(want, LEN, 0, 0, 5);
	want[NET_HDR_NUM_BUFFERS] = 0x55; /* whatever the host left there */
	host_send(f, want, LEN);

	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(used_id(f, NET_RXQ, (uint16_t)i), h[i]);
	assert_int_equal(used_len(f, NET_RXQ, 0), 1000);
	assert_int_equal(used_len(f, NET_RXQ, 1), 1000);
	assert_int_equal(used_len(f, NET_RXQ, 2), 500);
	/* num_buffers says how many chains the frame took */
	assert_int_equal(le16(gp(f, a[0] + NET_HDR_NUM_BUFFERS, 2)), 3);
	assert_memory_equal(gp(f, a[0], 10), want, 10);
	assert_memory_equal(gp(f, a[0] + 12, 988), want + 12, 988);
	assert_memory_equal(gp(f, a[1], 1000), want + 1000, 1000);
	assert_memory_equal(gp(f, a[2], 500), want + 2000, 500);
	assert_int_equal(f->n->rx_frames, 1);
	assert_int_equal(f->n->rx_bytes, LEN - NET_HDR_LEN);
	assert_true(signalled(f, NET_RXQ));
	/* no more buffers: reading stops until the next kick */
	assert_true(f->n->rx_blocked);
	assert_false(f->n->events & EPOLLIN);
}

/* A frame that fits one buffer says num_buffers 1. */
static void rx_mergeable_one_buffer(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a;
	uint16_t h = rx_add(f, 2048, &a);
	rx_add(f, 2048, NULL);
	uint8_t want[600];
	frame_make(want, sizeof(want), 0, 0, 8);
	want[NET_HDR_NUM_BUFFERS] = 7;
	host_send(f, want, sizeof(want));
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_int_equal(used_id(f, NET_RXQ, 0), h);
	assert_int_equal(used_len(f, NET_RXQ, 0), sizeof(want));
	assert_int_equal(le16(gp(f, a + NET_HDR_NUM_BUFFERS, 2)), 1);
	assert_memory_equal(gp(f, a + 12, sizeof(want) - 12), want + 12, sizeof(want) - 12);
	/* buffers left: the backend is watched for the next frame */
	assert_false(f->n->rx_blocked);
	assert_true(f->n->events & EPOLLIN);
	host_send_frame(f, 100, 1);
	assert_true(ready_events(f) & EPOLLIN);
	backend_event(f, EPOLLIN);
	assert_int_equal(used_idx(f, NET_RXQ), 2);
	assert_int_equal(used_len(f, NET_RXQ, 1), 100);
}

static void rx_no_buffers_no_spin(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	host_send_frame(f, 300, 4);
	kick(f, NET_RXQ);
	kick(f, NET_TXQ);
	/* nothing to receive into: the frame stays in the backend, which is
	 * not watched, so the event thread sleeps although it is readable */
	assert_true(f->n->rx_blocked);
	assert_false(f->n->events & EPOLLIN);
	assert_int_equal(ready_events(f), 0);
	assert_int_equal(used_idx(f, NET_RXQ), 0);
	assert_int_equal(f->n->rx_frames, 0);
	uint8_t b[400];
	assert_int_equal(recv(f->n->fd, b, sizeof(b), MSG_PEEK), 300);

	/* the guest gives a buffer and kicks: the frame arrives, and with
	 * a buffer left over the backend is watched again */
	uint64_t a;
	rx_add(f, 1024, &a);
	rx_add(f, 1024, NULL);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_int_equal(used_len(f, NET_RXQ, 0), 300);
	assert_false(f->n->rx_blocked);
	assert_true(f->n->events & EPOLLIN);
}

/* The guest runs out of buffers in the middle of a frame: nothing is pushed
 * (the driver must see a frame's chains together), the device waits for the
 * kick, then finishes the frame. */
static void rx_frame_waits_for_buffers(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a[3];
	uint16_t h[3];
	h[0] = rx_add(f, 100, &a[0]);
	enum { LEN = 250 };
	uint8_t want[LEN];
	frame_make(want, LEN, 0, 0, 6);
	host_send(f, want, LEN);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 0);
	assert_true(f->n->rx_blocked);
	assert_false(f->n->events & EPOLLIN);

	h[1] = rx_add(f, 100, &a[1]);
	h[2] = rx_add(f, 100, &a[2]);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(used_id(f, NET_RXQ, (uint16_t)i), h[i]);
	assert_int_equal(used_len(f, NET_RXQ, 2), 50);
	assert_int_equal(le16(gp(f, a[0] + NET_HDR_NUM_BUFFERS, 2)), 3);
	assert_memory_equal(gp(f, a[1], 100), want + 100, 100);
	assert_memory_equal(gp(f, a[2], 50), want + 200, 50);
	assert_true(signalled(f, NET_RXQ));
}

/* Without MRG_RXBUF a frame goes into one chain (here of two buffers); one
 * that does not fit is dropped and the chain kept for the next frame. */
static void rx_without_mergeable(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	uint32_t lens[2] = {NET_HDR_LEN, 500};
	uint64_t a[2];
	uint16_t h = chain_add(f, NET_RXQ, lens, 2, 0, a);
	host_send_frame(f, 600, 1); /* too big */
	uint8_t want[400];
	frame_make(want, sizeof(want), 0, 0, 2);
	host_send(f, want, sizeof(want));
	kick(f, NET_RXQ);
	assert_int_equal(f->n->rx_dropped, 1);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_int_equal(used_id(f, NET_RXQ, 0), h);
	assert_int_equal(used_len(f, NET_RXQ, 0), sizeof(want));
	assert_int_equal(le16(gp(f, a[0] + NET_HDR_NUM_BUFFERS, 2)), 1);
	assert_memory_equal(gp(f, a[1], sizeof(want) - 12), want + 12, sizeof(want) - 12);
}

/* Offloads the guest did not accept never reach it. */
static void rx_header_follows_features(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a[2];
	rx_add(f, 2048, &a[0]);
	rx_add(f, 2048, &a[1]);
	uint8_t p[100];
	frame_make(p, sizeof(p), 1 /* NEEDS_CSUM */, 0, 1);
	host_send(f, p, sizeof(p));
	frame_make(p, sizeof(p), 0, 1 /* GSO TCPV4 */, 1);
	host_send(f, p, sizeof(p));
	frame_make(p, sizeof(p), 0, 4 /* GSO TCPV6 */, 1);
	host_send(f, p, sizeof(p));
	frame_make(p, sizeof(p), 0, 3 /* GSO UDP */, 1);
	host_send(f, p, sizeof(p));
	frame_make(p, 5, 0, 0, 1);
	host_send(f, p, 5); /* shorter than the header */
	frame_make(p, sizeof(p), 2 /* DATA_VALID */, 0, 1);
	host_send(f, p, sizeof(p));
	kick(f, NET_RXQ);
	assert_int_equal(f->n->rx_dropped, 5);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	/* without GUEST_CSUM the device sets flags to 0 */
	assert_int_equal(gp(f, a[0], 1)[0], 0);
	assert_int_equal(f->n->rx_frames, 1);
}

static void rx_offloads_when_accepted(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
	uint64_t a[2];
	rx_add(f, 2048, &a[0]);
	rx_add(f, 2048, &a[1]);
	uint8_t p[100];
	frame_make(p, sizeof(p), 1, 1, 1); /* NEEDS_CSUM + TCPV4 */
	host_send(f, p, sizeof(p));
	frame_make(p, sizeof(p), 1, 4, 1); /* TCPV6 not accepted */
	host_send(f, p, sizeof(p));
	frame_make(p, sizeof(p), 2, 0, 1); /* DATA_VALID stays */
	host_send(f, p, sizeof(p));
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 2);
	assert_int_equal(f->n->rx_dropped, 1);
	assert_int_equal(gp(f, a[0], 2)[0], 1);
	assert_int_equal(gp(f, a[0], 2)[1], 1);
	assert_int_equal(gp(f, a[1], 2)[0], 2);
}

/* A 64 KiB GSO frame over 33 buffers of 2 KiB: the biggest the TAP sends. */
static void rx_largest_frame(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
	uint64_t a[40];
	for (int i = 0; i < 40; i++)
		rx_add(f, 2048, &a[i]);
	uint8_t *want = malloc(NET_MAX_FRAME);
	assert_non_null(want);
	frame_make(want, NET_MAX_FRAME, 1, 1, 3);
	host_send(f, want, NET_MAX_FRAME);
	kick(f, NET_RXQ);
	unsigned nb = (NET_MAX_FRAME + 2047) / 2048;
	assert_int_equal(used_idx(f, NET_RXQ), nb);
	assert_int_equal(le16(gp(f, a[0] + NET_HDR_NUM_BUFFERS, 2)), nb);
	assert_int_equal(used_len(f, NET_RXQ, (uint16_t)(nb - 1)), NET_MAX_FRAME - 2048 * (nb - 1));
	for (unsigned i = 1; i < nb; i++)
		assert_memory_equal(gp(f, a[i], used_len(f, NET_RXQ, (uint16_t)i)),
				    want + 2048 * i, used_len(f, NET_RXQ, (uint16_t)i));
	free(want);
}

/* A batch of frames, then the device yields with EPOLLIN still watched. */
static void rx_batch_yields(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	for (unsigned i = 0; i < NET_BATCH + 5; i++) {
		rx_add(f, 256, NULL);
		host_send_frame(f, 64, (uint8_t)i);
	}
	rx_add(f, 256, NULL);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), NET_BATCH);
	assert_true(f->n->events & EPOLLIN);
	assert_true(ready_events(f) & EPOLLIN);
	backend_event(f, EPOLLIN);
	assert_int_equal(used_idx(f, NET_RXQ), NET_BATCH + 5);
	assert_int_equal(ready_events(f), 0);
}

/* An rx chain without room for the header breaks the driver's contract:
 * NEEDS_RESET, and the device stops watching the backend. */
static void rx_chain_too_small(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	rx_add(f, 8, NULL);
	host_send_frame(f, 100, 1);
	kick(f, NET_RXQ);
	assert_true(needs_reset(f));
	assert_true(f->n->broken);
	assert_false(f->n->watching);
	assert_int_equal(used_idx(f, NET_RXQ), 0);
	/* quiet until reset */
	rx_add(f, 1000, NULL);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 0);
}

/* A device-readable-only rx chain: the same. */
static void rx_chain_not_writable(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint32_t len = 100;
	chain_add(f, NET_RXQ, &len, 1, 1, NULL);
	kick(f, NET_RXQ);
	assert_true(needs_reset(f));
}

/* A broken queue (here a head out of range) sets NEEDS_RESET. */
static void vq_error_needs_reset(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	set16(gp(f, QBASE(NET_TXQ) + 0x1000 + 4, 2), QSZ); /* head 256 of 256 */
	set16(gp(f, QBASE(NET_TXQ) + 0x1000 + 2, 2), 1);
	kick(f, NET_TXQ);
	assert_true(needs_reset(f));
	assert_true(f->n->broken);
	assert_false(f->n->watching);
	/* the driver resets the device, and it works again */
	net_ops.reset(&f->d);
	f->d.status = 0;
	f->avail[NET_TXQ] = 0;
	memset(gp(f, QBASE(NET_TXQ), 0x3000), 0, 0x3000);
	fx_start(f, 0);
	uint32_t len = 20;
	uint64_t a;
	chain_add(f, NET_TXQ, &len, 1, 1, &a);
	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), 1);
	assert_false(needs_reset(f));
}

/* Reset forgets chains in flight (no push) and stops watching the backend. */
static void reset_forgets_in_flight(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	rx_add(f, 100, NULL);
	host_send_frame(f, 250, 1); /* waits for more buffers */
	kick(f, NET_RXQ);
	unsigned filled = backend_fill(f);
	uint32_t len = 40;
	chain_add(f, NET_TXQ, &len, 1, 1, NULL);
	kick(f, NET_TXQ);
	assert_true(f->n->tx_pending);
	assert_true(f->n->watching);

	net_ops.reset(&f->d);
	assert_false(f->n->watching);
	assert_false(f->n->tx_pending);
	assert_false(f->n->rx_have_first);
	assert_int_equal(f->n->rx_len, 0);
	assert_int_equal(used_idx(f, NET_RXQ), 0);
	assert_int_equal(used_idx(f, NET_TXQ), 0);
	host_drain(f, filled, NET_HDR_LEN);
	assert_int_equal(ready_events(f), 0);
}

/* The backend hangs up (the TAP was deleted): logged once, not watched any
 * more, and tx frames are dropped so the guest's queue keeps moving. */
static void backend_hangup(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	rx_add(f, 1000, NULL);
	kick(f, NET_RXQ);
	assert_true(f->n->events & EPOLLIN);
	close(f->peer);
	f->peer = -1;
	uint32_t ev = ready_events(f);
	assert_true(ev & (EPOLLHUP | EPOLLERR));
	backend_event(f, ev);
	assert_true(f->n->dead);
	assert_false(f->n->watching);
	assert_int_equal(ready_events(f), 0);
	uint32_t len = 40;
	chain_add(f, NET_TXQ, &len, 1, 1, NULL);
	kick(f, NET_TXQ);
	assert_int_equal(used_idx(f, NET_TXQ), 1);
	assert_int_equal(f->n->tx_dropped, 1);
	assert_false(needs_reset(f));
}

/* ---- configuration and the TAP ---- */

/* ---- rate limiters: a long refill time makes "over budget" deterministic ---- */

static void tx_rate_limited(void **state)
{
	struct fx *f = *state;
	struct rl_config c = {.bandwidth = {.size = 250, .refill_ms = 3600000}};
	rl_init(&f->n->tx_rl, &c, stats_now_ns());
	f->n->tx_limited = true;
	fx_start(f, 0);
	for (int i = 0; i < 3; i++) {
		uint32_t lens[1] = {NET_HDR_LEN + 100};
		uint64_t a[1];
		chain_add(f, NET_TXQ, lens, 1, 1, a);
		frame_make(gp(f, a[0], lens[0]), lens[0], 0, 0, (uint8_t)i);
	}
	kick(f, NET_TXQ);
	/* 250 bytes: two 100-byte frames pass, the third waits in hand */
	uint8_t got[256];
	assert_int_equal(host_recv(f, got, sizeof(got)), NET_HDR_LEN + 100);
	assert_int_equal(host_recv(f, got, sizeof(got)), NET_HDR_LEN + 100);
	assert_int_equal(host_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, NET_TXQ), 2);
	assert_true(f->n->tx_pending);
	assert_true(f->n->tx_throttled);
	assert_int_equal(f->n->tx_rl.throttled, 1);
	/* throttled: not waiting for EPOLLOUT either (the timer brings it back) */
	assert_false(f->n->events & EPOLLOUT);
	/* a kick while throttled sends nothing */
	kick(f, NET_TXQ);
	assert_int_equal(host_recv(f, got, sizeof(got)), -1);
	/* new limits (what PATCH does): without one the held frame goes */
	struct rl_config off = {0};
	rl_update(&f->n->tx_rl, &off, stats_now_ns());
	f->n->tx_limited = false;
	f->n->tx_throttled = false;
	kick(f, NET_TXQ);
	assert_int_equal(host_recv(f, got, sizeof(got)), NET_HDR_LEN + 100);
	assert_int_equal(used_idx(f, NET_TXQ), 3);
}

static void rx_rate_limited(void **state)
{
	struct fx *f = *state;
	struct rl_config c = {.ops = {.size = 1, .refill_ms = 3600000}};
	rl_init(&f->n->rx_rl, &c, stats_now_ns());
	f->n->rx_limited = true;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	for (int i = 0; i < 4; i++)
		rx_add(f, 2000, NULL);
	host_send_frame(f, 500, 1);
	host_send_frame(f, 500, 2);
	kick(f, NET_RXQ);
	/* one operation: one frame delivered, the second held, reading stopped */
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_int_equal(f->n->rx_frames, 1);
	assert_true(f->n->rx_throttled);
	assert_true(f->n->rx_len > 0); /* the second frame waits in the bounce buffer */
	assert_false(f->n->events & EPOLLIN);
	backend_event(f, EPOLLIN); /* even if the backend says more is there */
	assert_int_equal(used_idx(f, NET_RXQ), 1);
}

static void config_space(void **state)
{
	struct fx *f = *state;
	uint8_t b[NET_CONFIG_LEN];
	for (uint32_t i = 0; i < NET_CONFIG_LEN; i++)
		net_ops.config_read(&f->d, i, &b[i], 1);
	assert_memory_equal(b, MAC, 6);
	assert_int_equal(le16(b + 6), VIRTIO_NET_S_LINK_UP);
	uint8_t w[4];
	net_ops.config_read(&f->d, 4, w, 4);
	assert_memory_equal(w, MAC + 4, 2);
	assert_int_equal(le16(w + 2), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(net_ops.num_queues, 2);
	assert_int_equal(net_ops.queue_max_size, 256);
	assert_int_equal(net_ops.device_id, VIRTIO_ID_NET);

	uint8_t mac[6];
	net_default_mac(3, mac);
	const uint8_t want[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x03};
	assert_memory_equal(mac, want, 6);
	assert_true(mac[0] & 2);    /* locally administered */
	assert_false(mac[0] & 1);   /* unicast */
}

static void features_offered(void **state)
{
	(void)state;
	uint64_t all = NET_FEATURES_BASE | NET_FEATURES_GUEST_OFFLOADS;
	assert_true(all & VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	assert_true(all & VIRTIO_BIT(VIRTIO_NET_F_MAC));
	/* TSO needs checksum offload in the same direction (virtio 5.1.3.1) */
	assert_true(NET_FEATURES_BASE & VIRTIO_BIT(VIRTIO_NET_F_CSUM));
	assert_true(NET_FEATURES_GUEST_OFFLOADS & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
	/* no control queue, no UFO (deprecated in Linux's TAP) */
	assert_false(all & VIRTIO_BIT(17));  /* CTRL_VQ */
	assert_false(all & VIRTIO_BIT(10));  /* GUEST_UFO */
	assert_false(all & VIRTIO_BIT(14));  /* HOST_UFO */
}

static void offload_flags(void **state)
{
	(void)state;
	uint64_t csum = VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
	uint64_t t4 = VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4), t6 = VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	assert_int_equal(tap_offload_flags(0), 0);
	assert_int_equal(tap_offload_flags(t4 | t6), 0); /* TSO without checksum: nothing */
	/* host-side offloads do not govern what the TAP may send us */
	assert_int_equal(tap_offload_flags(VIRTIO_BIT(VIRTIO_NET_F_CSUM) |
					   VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4)), 0);
	assert_int_equal(tap_offload_flags(csum), TUN_F_CSUM);
	assert_int_equal(tap_offload_flags(csum | t4), TUN_F_CSUM | TUN_F_TSO4);
	assert_int_equal(tap_offload_flags(csum | t4 | t6), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
}

static void tap_name_checked(void **state)
{
	(void)state;
	struct kite_err err = {0};
	bool off = true;
	assert_int_equal(tap_open("uplink", "a-name-of-16-byt", &off, &err), -1);
	assert_int_equal(err.code, KITE_EXIT_ERROR);
	assert_string_equal(err.msg, "network interface 'uplink': TAP 'a-name-of-16-byt': "
				     "the name must be 1 to 15 bytes");
	assert_false(off);
	struct kite_err err2 = {0};
	assert_int_equal(tap_open("net1", "", &off, &err2), -1);
	assert_non_null(strstr(err2.msg, "network interface 'net1': TAP '': "));
}

/* ---- snapshots ----
 * The device's own bytes are the MAC the guest read; nothing is in flight in
 * a snapshot: quiesce gives held rx and tx chains back to their queues (a
 * frame half delivered or waiting for budget is dropped, as on a wire). The
 * transport's part (queue positions) is played here by vq_get_state /
 * vq_set_state; test_virtio_snap.c tests it. */

/* quiesce and save, as virtio_quiesce_all and virtio_save_all call them, into
 * section VIRT/0; r is what a restore reads. */
static void net_snapshot(struct fx *f, struct snap_reader *r)
{
	struct kite_err err = {0};
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "VIRT", 0);
	pthread_mutex_lock(&f->d.lock);
	net_ops.quiesce(&f->d);
	assert_int_equal(f->d.queues[NET_RXQ].vq.inflight, 0);
	assert_int_equal(f->d.queues[NET_TXQ].vq.inflight, 0);
	assert_int_equal(net_ops.save(&f->d, &w, &err), 0);
	pthread_mutex_unlock(&f->d.lock);
	snapw_end(&w);
	snap_test_reopen(&w, r);
}

/* The device as a restoring process has it: what it held forgotten (reset),
 * queues at the saved positions, the device's bytes read, then activate and
 * one notify per queue, as the transport rebuilds it. Same guest memory and
 * backend, so a frame the host sends reaches the restored device. */
static void net_restore_here(struct fx *f, const struct snap_reader *r)
{
	struct vq_state st[2];
	for (unsigned q = 0; q < 2; q++)
		vq_get_state(&f->d.queues[q].vq, &st[q]);
	pthread_mutex_lock(&f->d.lock);
	net_ops.reset(&f->d);
	pthread_mutex_unlock(&f->d.lock);
	for (unsigned q = 0; q < 2; q++) {
		const char *why = NULL;
		queue_start(f, q);
		assert_int_equal(vq_set_state(&f->d.queues[q].vq, &st[q], &why), 0);
	}
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_true(snapr_find(r, "VIRT", 0, &c));
	pthread_mutex_lock(&f->d.lock);
	assert_int_equal(net_ops.restore(&f->d, &c, &err), 0);
	assert_true(snapc_done(&c));
	assert_int_equal(net_ops.activate(&f->d), 0);
	pthread_mutex_unlock(&f->d.lock);
	kick(f, NET_RXQ);
	kick(f, NET_TXQ);
}

/* A device freshly made from a configuration with this MAC (never activated),
 * and its restore of r's section. */
struct fresh_net {
	struct virtio_dev d;
	struct net_dev *n;
	int peer;
};

static void fresh_net_new(struct fresh_net *x, const uint8_t mac[6])
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	memset(x, 0, sizeof(*x));
	x->peer = sv[1];
	x->n = net_dev_new(sv[0], false, mac, "net0");
	assert_non_null(x->n);
	x->d.ops = &net_ops;
	x->d.priv = x->n;
	snprintf(x->d.name, sizeof(x->d.name), "virtio-net0");
}

static int fresh_net_restore(struct fresh_net *x, const struct snap_reader *r, struct snap_cursor *c,
			     struct kite_err *err)
{
	assert_true(snapr_find(r, "VIRT", 0, c));
	return net_ops.restore(&x->d, c, err);
}

static void fresh_net_free(struct fresh_net *x)
{
	net_dev_free(x->n);
	close(x->peer);
}

/* The MAC goes into the snapshot and a device with the same MAC takes it
 * back (and shows it in config space); a MAC that is not the interface's is
 * refused, naming both, since the guest would keep using the old one. */
static void snapshot_keeps_mac(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	struct snap_reader r;
	net_snapshot(f, &r);
	size_t len;
	uint8_t *p = snap_test_payload(&r, "VIRT", 0, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(p, MAC, 6);

	struct fresh_net x;
	fresh_net_new(&x, MAC);
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_int_equal(fresh_net_restore(&x, &r, &c, &err), 0);
	assert_true(snapc_done(&c));
	uint8_t cfg[NET_CONFIG_LEN];
	net_ops.config_read(&x.d, 0, cfg, 6);
	assert_memory_equal(cfg, MAC, 6);

	p[5] ^= 0x01; /* 52:54:00:12:34:57 */
	err = (struct kite_err){0};
	assert_int_equal(fresh_net_restore(&x, &r, &c, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "MAC"));
	assert_non_null(strstr(err.msg, "52:54:00:12:34:57"));
	assert_non_null(strstr(err.msg, "52:54:00:12:34:56"));
	assert_non_null(strstr(err.msg, "virtio-net0"));
	/* the device keeps its own MAC */
	net_ops.config_read(&x.d, 0, cfg, 6);
	assert_memory_equal(cfg, MAC, 6);
	fresh_net_free(&x);
	snapr_free(&r);
}

/* A section a byte short is refused by the device; one a byte long is read
 * only as far as the MAC, and the cursor tells the transport the rest is
 * there (virtio_restore_all refuses it: test_virtio_snap.c). */
static void snapshot_short_and_long_sections(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	struct snap_reader r, shorter, longer, empty;
	net_snapshot(f, &r);
	snap_test_resize(&r, "VIRT", 0, 1, &shorter);
	snap_test_resize(&r, "VIRT", 0, 6, &empty);
	snap_test_resize(&r, "VIRT", 0, -1, &longer);

	struct fresh_net x;
	fresh_net_new(&x, MAC);
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_int_equal(fresh_net_restore(&x, &shorter, &c, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "short"));
	err = (struct kite_err){0};
	assert_int_equal(fresh_net_restore(&x, &empty, &c, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "short"));
	err = (struct kite_err){0};
	assert_int_equal(fresh_net_restore(&x, &longer, &c, &err), 0);
	assert_false(snapc_done(&c));
	assert_false(c.bad);
	fresh_net_free(&x);
	snapr_free(&r);
	snapr_free(&shorter);
	snapr_free(&empty);
	snapr_free(&longer);
}

/* The device holds an empty rx buffer while it waits for a frame; quiesce
 * gives it back, so the save finds nothing in flight and the restored device
 * pops it again: the next frame lands in that same buffer. */
static void snapshot_gives_back_rx_buffer(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a;
	uint16_t h = rx_add(f, 1000, &a);
	kick(f, NET_RXQ);
	assert_true(f->n->rx_have_first);
	assert_int_equal(f->d.queues[NET_RXQ].vq.inflight, 1);

	struct snap_reader r;
	net_snapshot(f, &r);
	assert_false(f->n->rx_have_first);
	assert_int_equal(used_idx(f, NET_RXQ), 0); /* given back, not pushed */
	assert_int_equal(f->n->rx_dropped, 0);

	net_restore_here(f, &r);
	assert_true(f->n->rx_have_first);
	assert_true(f->n->events & EPOLLIN);
	uint8_t want[300];
	frame_make(want, sizeof(want), 0, 0, 9);
	host_send(f, want, sizeof(want));
	assert_true(ready_events(f) & EPOLLIN);
	backend_event(f, EPOLLIN);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_int_equal(used_id(f, NET_RXQ, 0), h);
	assert_int_equal(used_len(f, NET_RXQ, 0), sizeof(want));
	assert_memory_equal(gp(f, a + NET_HDR_LEN, sizeof(want) - NET_HDR_LEN), want + NET_HDR_LEN,
			    sizeof(want) - NET_HDR_LEN);
	snapr_free(&r);
}

/* A frame spread over two buffers, waiting for a third: quiesce drops it
 * (counted) and gives both buffers back; after the restore the next frame
 * starts in the first of them again. */
static void snapshot_drops_half_delivered_frame(void **state)
{
	struct fx *f = *state;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	uint64_t a[3];
	uint16_t h[3];
	h[0] = rx_add(f, 100, &a[0]);
	h[1] = rx_add(f, 100, &a[1]);
	host_send_frame(f, 250, 1);
	kick(f, NET_RXQ);
	assert_int_equal(f->n->rx_nused, 2);
	assert_int_equal(f->d.queues[NET_RXQ].vq.inflight, 2);
	assert_int_equal(used_idx(f, NET_RXQ), 0);

	struct snap_reader r;
	net_snapshot(f, &r);
	assert_int_equal(f->n->rx_dropped, 1);
	assert_int_equal(f->n->rx_len, 0);
	assert_int_equal(f->n->rx_nused, 0);
	assert_int_equal(used_idx(f, NET_RXQ), 0);

	net_restore_here(f, &r);
	h[2] = rx_add(f, 100, &a[2]);
	kick(f, NET_RXQ);
	enum { LEN = 250 };
	uint8_t want[LEN];
	frame_make(want, LEN, 0, 0, 2);
	host_send(f, want, LEN);
	backend_event(f, EPOLLIN);
	assert_int_equal(used_idx(f, NET_RXQ), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(used_id(f, NET_RXQ, (uint16_t)i), h[i]);
	assert_int_equal(le16(gp(f, a[0] + NET_HDR_NUM_BUFFERS, 2)), 3);
	assert_memory_equal(gp(f, a[1], 100), want + 100, 100);
	assert_memory_equal(gp(f, a[2], 50), want + 200, 50);
	assert_int_equal(f->n->rx_frames, 1);
	assert_int_equal(f->n->rx_dropped, 1);
	snapr_free(&r);
}

/* A frame waiting in the bounce buffer for the rx limiter: dropped, its
 * buffer given back. */
static void snapshot_drops_rate_limited_frame(void **state)
{
	struct fx *f = *state;
	struct rl_config c = {.ops = {.size = 1, .refill_ms = 3600000}};
	rl_init(&f->n->rx_rl, &c, stats_now_ns());
	f->n->rx_limited = true;
	fx_start(f, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	rx_add(f, 2000, NULL);
	uint16_t h = rx_add(f, 2000, NULL);
	host_send_frame(f, 500, 1);
	host_send_frame(f, 500, 2);
	kick(f, NET_RXQ);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	assert_true(f->n->rx_len > 0);
	assert_int_equal(f->d.queues[NET_RXQ].vq.inflight, 1);

	struct snap_reader r;
	net_snapshot(f, &r);
	assert_int_equal(f->n->rx_dropped, 1);
	assert_int_equal(f->n->rx_len, 0);
	assert_false(f->n->rx_have_first);
	assert_int_equal(used_idx(f, NET_RXQ), 1);
	/* popped again after the snapshot: the same buffer */
	kick(f, NET_RXQ);
	assert_true(f->n->rx_have_first);
	assert_int_equal(f->n->rx_first.head, h);
	snapr_free(&r);
}

/* A tx chain waiting for a full TAP: quiesce hands it back, unsent and not
 * pushed; the restored device pops it again and sends it once there is room. */
static void snapshot_gives_back_tx_chain(void **state)
{
	struct fx *f = *state;
	fx_start(f, 0);
	unsigned filled = backend_fill(f);
	uint32_t len = 40;
	uint64_t a;
	uint16_t h = chain_add(f, NET_TXQ, &len, 1, 1, &a);
	frame_make(gp(f, a, len), len, 0, 0, 4);
	kick(f, NET_TXQ);
	assert_true(f->n->tx_pending);
	assert_int_equal(f->d.queues[NET_TXQ].vq.inflight, 1);

	struct snap_reader r;
	net_snapshot(f, &r);
	assert_false(f->n->tx_pending);
	assert_int_equal(used_idx(f, NET_TXQ), 0);
	assert_int_equal(f->n->tx_dropped, 0);

	net_restore_here(f, &r);
	assert_true(f->n->tx_pending); /* popped again, the TAP still full */
	host_drain(f, filled, NET_HDR_LEN);
	assert_true(ready_events(f) & EPOLLOUT);
	backend_event(f, EPOLLOUT);
	assert_int_equal(used_idx(f, NET_TXQ), 1);
	assert_int_equal(used_id(f, NET_TXQ, 0), h);
	uint8_t got[64], want[40];
	frame_make(want, len, 0, 0, 4);
	assert_int_equal(host_recv(f, got, sizeof(got)), len);
	assert_memory_equal(got, want, len);
	assert_int_equal(host_recv(f, got, sizeof(got)), -1);
	assert_int_equal(f->n->tx_frames, 1);
	assert_int_equal(f->n->tx_dropped, 0);
	snapr_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(tx_frame_spanning_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(tx_header_too_short, setup, teardown),
		cmocka_unit_test_setup_teardown(tx_frame_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(tx_eagain_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(tx_batch_yields, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_mergeable_spans_chains, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_mergeable_one_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_no_buffers_no_spin, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_frame_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_without_mergeable, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_header_follows_features, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_offloads_when_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_largest_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_batch_yields, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_chain_too_small, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_chain_not_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(vq_error_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(reset_forgets_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(backend_hangup, setup, teardown),
		cmocka_unit_test_setup_teardown(tx_rate_limited, setup, teardown),
		cmocka_unit_test_setup_teardown(rx_rate_limited, setup, teardown),
		cmocka_unit_test_setup_teardown(config_space, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_keeps_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_short_and_long_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_gives_back_rx_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_drops_half_delivered_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_drops_rate_limited_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_gives_back_tx_chain, setup, teardown),
		cmocka_unit_test(features_offered),
		cmocka_unit_test(offload_flags),
		cmocka_unit_test(tap_name_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
