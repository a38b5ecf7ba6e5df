/* virtio-vsock bridged to host Unix sockets, the way Firecracker does it (see
 * vsock.h for the two directions).
 *
 * Each connection pairs a guest stream socket (guest port) with one host Unix
 * socket (nonblocking, watched on the device's event thread). Data moves with
 * the virtio-vsock credit rules both ways:
 *  - to the guest: never more than the guest's buf_alloc minus what it has not
 *    consumed yet (tx_cnt - its fwd_cnt); a host socket is read only when an rx
 *    buffer and credit are there, otherwise it stays unwatched and its data
 *    waits in the kernel (back-pressure onto the host process);
 *  - from the guest: we advertise VSOCK_BUF_ALLOC; what the host socket does
 *    not take at once is held (at most that much: a guest that sends more than
 *    its credit is reset) and written when the socket is writable again. As the
 *    host takes bytes we tell the guest (fwd_cnt) with CREDIT_UPDATE.
 *
 * Packets to the guest wait for rx buffers: per connection, the control packets
 * it owes (REQUEST, RESPONSE, SHUTDOWN, CREDIT_UPDATE, RST) are flags, and
 * connections with something to send sit in a FIFO; RSTs for packets that
 * match no connection go to a small ring, and while that ring is full the tx
 * queue is not read (the guest cannot make us queue without bound).
 *
 * Every header from the guest is copied, then checked: source CID, destination
 * CID, type and length; a bad one is dropped (counted in d->errors) or answered
 * with RST. Nothing the guest sends stops the VMM.
 *
 * Snapshots (Firecracker's behaviour): connections are not carried over. The
 * restored device sends the guest a TRANSPORT_RESET event on the event queue,
 * so the driver drops the connections it had; host-side listeners work as
 * before. Not done: a timeout for host-initiated connections the guest never
 * answers (the host process can give up and close its socket: that ends the
 * connection). */
#include "virtio/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapfile.h"

/* ---- header wire format ---- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_SIZE])
{
	put64(out, h->src_cid);
	put64(out + 8, h->dst_cid);
	put32(out + 16, h->src_port);
	put32(out + 20, h->dst_port);
	put32(out + 24, h->len);
	put16(out + 28, h->type);
	put16(out + 30, h->op);
	put32(out + 32, h->flags);
	put32(out + 36, h->buf_alloc);
	put32(out + 40, h->fwd_cnt);
}

void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	h->src_cid = get64(in);
	h->dst_cid = get64(in + 8);
	h->src_port = get32(in + 16);
	h->dst_port = get32(in + 20);
	h->len = get32(in + 24);
	h->type = get16(in + 28);
	h->op = get16(in + 30);
	h->flags = get32(in + 32);
	h->buf_alloc = get32(in + 36);
	h->fwd_cnt = get32(in + 40);
}

/* ---- state ---- */

enum conn_state {
	CONN_HANDSHAKE,   /* accepted on uds_path, "CONNECT <port>\n" not read yet */
	CONN_CONNECTING,  /* host-initiated: REQUEST owed or sent, no RESPONSE yet */
	CONN_ESTABLISHED,
	CONN_CLOSING,     /* host socket closed; a RST is owed, then the entry goes */
};

/* Control packets a connection owes the guest. */
#define PEND_REQUEST 1u
#define PEND_RESPONSE 2u
#define PEND_SHUTDOWN 4u
#define PEND_CREDIT 8u
#define PEND_RST 16u

struct conn {
	struct conn *all_prev, *all_next; /* every connection */
	struct conn *q_prev, *q_next;     /* send FIFO, while queued */
	struct conn *h_next;              /* hash chain, while hashed */
	bool queued, hashed;
	enum conn_state state;
	uint32_t local_port, peer_port;   /* host side, guest side */
	int fd;
	uint32_t watched;                 /* epoll events registered; 0: unwatched */
	uint32_t pend;                    /* PEND_* */
	uint32_t shut_out;                /* SHUTDOWN flags owed to the guest */
	uint32_t peer_shut;               /* SHUTDOWN flags the guest sent */
	bool data_ready;                  /* host socket was readable, not yet drained */
	bool host_eof;                    /* the host shut its sending side */
	bool shut_wr;                     /* we shut the host socket's sending side */
	/* Credit, to the guest: its buffer and how much of our data it consumed. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* Credit, from the guest: bytes received, bytes the host socket took, and
	 * the fwd_cnt the guest last heard of. rx_cnt - fwd_cnt == buf_len. */
	uint32_t rx_cnt, fwd_cnt, fwd_cnt_sent;
	uint8_t *buf;                     /* VSOCK_BUF_ALLOC ring, allocated on need */
	uint32_t buf_off, buf_len;
	char line[VSOCK_CONNECT_LINE_MAX];
	uint32_t line_len;
};

#define HASH_SIZE 1024 /* power of two */
#define RST_RING 64

struct rst {
	uint32_t local_port, peer_port;
};

struct vsock {
	const struct vsock_env *env;
	uint32_t cid;
	char *uds_path;
	int listen_fd;
	dev_t sock_dev;            /* the socket file we created, to remove only it */
	ino_t sock_ino;
	bool active, broken;
	bool listen_watched;
	bool accept_paused;        /* out of file descriptors: wait for a close */

	struct conn *all;
	struct conn *q_head, *q_tail;
	struct conn *hash[HASH_SIZE];
	unsigned nr_conns, max_conns;
	uint32_t next_port;

	struct rst rst[RST_RING];
	unsigned rst_head, rst_count;

	struct vq_chain rxc, txc, evc;
	bool rx_held;              /* rxc is popped and unused */
	bool reset_pending;        /* restored: TRANSPORT_RESET owed to the guest */
	bool rx_pushed, tx_pushed; /* since the last signal */
	bool tx_waiting;           /* tx chains wait for room in the RST ring */

	uint8_t scratch[VSOCK_MAX_PAYLOAD];
};

static void conn_event(struct virtio_dev *d, void *ctx, uint32_t events);
static void listen_event(struct virtio_dev *d, void *ctx, uint32_t events);

static struct vsock *dev_vsock(struct virtio_dev *d) { return d->priv; }

static void broken(struct virtio_dev *d, struct vsock *v, const char *what, int err)
{
	char why[128];
	snprintf(why, sizeof(why), "%s queue: %s", what, vq_strerror(err));
	v->broken = true;
	v->env->needs_reset(d, why);
}

/* ---- connection table ---- */

static unsigned hash_ports(uint32_t local, uint32_t peer)
{
	return ((local * 0x9e3779b1u) ^ (peer * 0x85ebca6bu)) & (HASH_SIZE - 1);
}

static struct conn *lookup(struct vsock *v, uint32_t local, uint32_t peer)
{
	for (struct conn *c = v->hash[hash_ports(local, peer)]; c; c = c->h_next)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static void hash_add(struct vsock *v, struct conn *c)
{
	unsigned h = hash_ports(c->local_port, c->peer_port);
	c->h_next = v->hash[h];
	v->hash[h] = c;
	c->hashed = true;
}

static void hash_del(struct vsock *v, struct conn *c)
{
	if (!c->hashed)
		return;
	for (struct conn **pp = &v->hash[hash_ports(c->local_port, c->peer_port)]; *pp;
	     pp = &(*pp)->h_next) {
		if (*pp == c) {
			*pp = c->h_next;
			break;
		}
	}
	c->hashed = false;
}

static void q_add(struct vsock *v, struct conn *c)
{
	if (c->queued)
		return;
	c->q_next = NULL;
	c->q_prev = v->q_tail;
	if (v->q_tail)
		v->q_tail->q_next = c;
	else
		v->q_head = c;
	v->q_tail = c;
	c->queued = true;
}

static void q_del(struct vsock *v, struct conn *c)
{
	if (!c->queued)
		return;
	if (c->q_prev)
		c->q_prev->q_next = c->q_next;
	else
		v->q_head = c->q_next;
	if (c->q_next)
		c->q_next->q_prev = c->q_prev;
	else
		v->q_tail = c->q_prev;
	c->queued = false;
}

static struct conn *conn_new(struct vsock *v, int fd, enum conn_state state)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->state = state;
	c->all_next = v->all;
	if (v->all)
		v->all->all_prev = c;
	v->all = c;
	v->nr_conns++;
	return c;
}

static void close_host(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	if (c->fd < 0)
		return;
	if (c->watched)
		v->env->unwatch(d, c->fd);
	c->watched = 0;
	close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->buf_len = 0;
}

static void listen_update(struct virtio_dev *d, struct vsock *v);

static void conn_free(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	close_host(d, v, c);
	hash_del(v, c);
	q_del(v, c);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		v->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	v->nr_conns--;
	free(c);
	if (v->accept_paused) {
		v->accept_paused = false;
		listen_update(d, v);
	}
}

/* ---- credit ---- */

/* Bytes the guest can take now. A fwd_cnt ahead of what we sent, or a buffer
 * that shrank below what is in flight, leaves no credit. */
static uint32_t peer_credit(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Tells the guest about consumed bytes once it believes half of our buffer is
 * taken: it never waits on credit we could have given. */
static void credit_check(struct conn *c)
{
	if (c->fwd_cnt != c->fwd_cnt_sent && c->rx_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 2)
		c->pend |= PEND_CREDIT;
}

static bool conn_can_read(const struct conn *c)
{
	return c->state == CONN_ESTABLISHED && c->fd >= 0 && !c->host_eof &&
	       !(c->peer_shut & VSOCK_SHUTDOWN_RCV);
}

static uint32_t conn_events(const struct conn *c)
{
	if (c->fd < 0)
		return 0;
	if (c->state == CONN_HANDSHAKE)
		return EPOLLIN;
	if (c->state == CONN_CONNECTING)
		return EPOLLRDHUP; /* the host process gives up before the guest answers */
	if (c->state != CONN_ESTABLISHED)
		return 0;
	uint32_t ev = 0;
	if (conn_can_read(c) && !c->data_ready && peer_credit(c) > 0)
		ev |= EPOLLIN;
	if (c->buf_len)
		ev |= EPOLLOUT;
	return ev;
}

/* Puts the connection in the send FIFO when it owes the guest something, and
 * watches its host socket for what it can use now. An unused socket is not
 * watched at all: a hung-up peer would otherwise wake us forever (EPOLLHUP is
 * reported whatever the events). */
static void conn_sched(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	bool work = c->pend || (c->data_ready && conn_can_read(c) && peer_credit(c) > 0);
	if (work)
		q_add(v, c);
	else
		q_del(v, c);

	uint32_t ev = conn_events(c);
	if (ev == c->watched)
		return;
	if (!ev) {
		v->env->unwatch(d, c->fd);
	} else if (v->env->watch(d, c->fd, ev, conn_event, c) < 0) {
		log_warn("%s: cannot watch a vsock host socket", d->name);
		ev = 0;
	}
	c->watched = ev;
}

/* The host socket goes; the guest hears RST unless it never knew the
 * connection. */
static void conn_reset(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	close_host(d, v, c);
	if (c->state == CONN_HANDSHAKE || (c->state == CONN_CONNECTING && (c->pend & PEND_REQUEST))) {
		conn_free(d, v, c);
		return;
	}
	c->state = CONN_CLOSING;
	c->pend = PEND_RST;
	c->data_ready = false;
	q_add(v, c);
}

static void rst_queue(struct vsock *v, uint32_t local_port, uint32_t peer_port)
{
	if (v->rst_count == RST_RING)
		return; /* only host events get here with a full ring; the guest times out */
	v->rst[(v->rst_head + v->rst_count) % RST_RING] = (struct rst){local_port, peer_port};
	v->rst_count++;
}

/* ---- host side: writing guest data ---- */

/* The guest will not send again (SEND) or at all: pass it on once its data
 * is out. 0, or -1 when the connection was reset. */
static int conn_drained(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	if (c->buf_len || c->fd < 0)
		return 0;
	if ((c->peer_shut & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) ==
	    (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) {
		/* The guest closed: it waits for our RST. */
		conn_reset(d, v, c);
		return -1;
	}
	if ((c->peer_shut & VSOCK_SHUTDOWN_SEND) && !c->shut_wr) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = true;
	}
	return 0;
}

/* Writes held guest bytes to the host socket. 0, or -1 on a dead socket. */
static int conn_flush(struct conn *c)
{
	while (c->buf_len) {
		uint32_t chunk = c->buf_len;
		if (chunk > VSOCK_BUF_ALLOC - c->buf_off)
			chunk = VSOCK_BUF_ALLOC - c->buf_off;
		ssize_t n = send(c->fd, c->buf + c->buf_off, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		c->buf_off = (c->buf_off + (uint32_t)n) % VSOCK_BUF_ALLOC;
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	c->buf_off = 0;
	return 0;
}

/* Guest data for the host: straight to the socket, the rest held. */
static void conn_write(struct virtio_dev *d, struct vsock *v, struct conn *c, const uint8_t *p,
		       uint32_t len)
{
	c->rx_cnt += len;
	if (!c->buf_len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_reset(d, v, c);
			return;
		}
		if (n > 0) {
			p += n;
			len -= (uint32_t)n;
			c->fwd_cnt += (uint32_t)n;
		}
	}
	if (len) {
		if (!c->buf && !(c->buf = malloc(VSOCK_BUF_ALLOC))) {
			log_warn("%s: out of memory for a vsock connection", d->name);
			conn_reset(d, v, c);
			return;
		}
		/* The credit check made room: buf_len + len <= VSOCK_BUF_ALLOC. */
		uint32_t at = (c->buf_off + c->buf_len) % VSOCK_BUF_ALLOC;
		uint32_t first = len < VSOCK_BUF_ALLOC - at ? len : VSOCK_BUF_ALLOC - at;
		memcpy(c->buf + at, p, first);
		memcpy(c->buf, p + first, len - first);
		c->buf_len += len;
	}
	credit_check(c);
}

/* ---- packets to the guest ---- */

/* Holds an rx chain with room for a header; false when the guest gave none. */
static bool rx_get(struct virtio_dev *d, struct vsock *v)
{
	if (v->rx_held)
		return true;
	struct vq *q = v->env->queue(d, VSOCK_QUEUE_RX);
	if (!q || v->broken)
		return false;
	for (;;) {
		int r = vq_pop(q, &v->rxc);
		if (r == VQ_EMPTY)
			return false;
		if (r < 0) {
			broken(d, v, "rx", r);
			return false;
		}
		if (v->rxc.writable_len >= VSOCK_HDR_SIZE) {
			v->rx_held = true;
			return true;
		}
		/* Too small for any packet: give it back empty. */
		d->errors++;
		vq_push(q, v->rxc.head, 0);
		v->rx_pushed = true;
	}
}

static void rx_send(struct virtio_dev *d, struct vsock *v, const struct vsock_hdr *h,
		    const void *payload)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	vq_chain_write(&v->rxc, 0, raw, sizeof(raw));
	if (h->len)
		vq_chain_write(&v->rxc, VSOCK_HDR_SIZE, payload, h->len);
	vq_push(v->env->queue(d, VSOCK_QUEUE_RX), v->rxc.head, VSOCK_HDR_SIZE + h->len);
	v->rx_held = false;
	v->rx_pushed = true;
}

static struct vsock_hdr conn_hdr(const struct vsock *v, const struct conn *c, uint16_t op)
{
	return (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->cid,
		.src_port = c->local_port,
		.dst_port = c->peer_port,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = VSOCK_BUF_ALLOC,
		.fwd_cnt = c->fwd_cnt,
	};
}

/* Host socket read in the EOF case: whether the host closed both ways (a
 * half-close leaves the socket writable without HUP). */
static bool host_hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

/* Reads host data into one RW packet. True when a packet went out. */
static bool conn_send_data(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	uint32_t room = v->rxc.writable_len - VSOCK_HDR_SIZE;
	uint32_t want = peer_credit(c);
	if (want > room)
		want = room;
	if (want > VSOCK_MAX_PAYLOAD)
		want = VSOCK_MAX_PAYLOAD;
	if (!want) {
		/* A header-only rx buffer cannot carry data: give it back empty. */
		d->errors++;
		vq_push(v->env->queue(d, VSOCK_QUEUE_RX), v->rxc.head, 0);
		v->rx_held = false;
		v->rx_pushed = true;
		return false;
	}
	ssize_t n = recv(c->fd, v->scratch, want, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			c->data_ready = false;
		else
			conn_reset(d, v, c);
		return false;
	}
	if (n == 0) {
		c->host_eof = true;
		c->data_ready = false;
		c->shut_out |= VSOCK_SHUTDOWN_SEND;
		if (host_hung_up(c->fd))
			c->shut_out |= VSOCK_SHUTDOWN_RCV;
		c->pend |= PEND_SHUTDOWN;
		return false;
	}
	struct vsock_hdr h = conn_hdr(v, c, VSOCK_OP_RW);
	h.len = (uint32_t)n;
	c->tx_cnt += (uint32_t)n;
	rx_send(d, v, &h, v->scratch);
	return true;
}

/* One packet (or none) from connection c into the held rx chain. */
static void conn_emit(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	struct vsock_hdr h = conn_hdr(v, c, 0);
	bool sent = false;

	if (c->pend & PEND_RST) {
		h.op = VSOCK_OP_RST;
		rx_send(d, v, &h, NULL);
		conn_free(d, v, c);
		return;
	}
	if (c->pend & PEND_REQUEST) {
		c->pend &= ~PEND_REQUEST;
		h.op = VSOCK_OP_REQUEST;
	} else if (c->pend & PEND_RESPONSE) {
		c->pend &= ~PEND_RESPONSE;
		h.op = VSOCK_OP_RESPONSE;
	} else if (c->data_ready && conn_can_read(c) && peer_credit(c) > 0) {
		sent = conn_send_data(d, v, c);
		if (c->state == CONN_CLOSING)
			return; /* reset: queued for its RST */
	}
	if (!sent && v->rx_held) {
		if (!h.op && (c->pend & PEND_SHUTDOWN)) {
			c->pend &= ~PEND_SHUTDOWN;
			h.op = VSOCK_OP_SHUTDOWN;
			h.flags = c->shut_out;
		} else if (!h.op && (c->pend & PEND_CREDIT)) {
			h.op = VSOCK_OP_CREDIT_UPDATE;
		}
		if (h.op) {
			rx_send(d, v, &h, NULL);
			sent = true;
		}
	}
	if (sent) {
		/* Every packet tells the guest our fwd_cnt. */
		c->fwd_cnt_sent = c->fwd_cnt;
		c->pend &= ~PEND_CREDIT;
	}
	q_del(v, c); /* back at the tail if it has more: fairness */
	conn_sched(d, v, c);
}

static void rx_pump(struct virtio_dev *d, struct vsock *v)
{
	while ((v->rst_count || v->q_head) && rx_get(d, v)) {
		if (v->rst_count) {
			struct rst r = v->rst[v->rst_head];
			v->rst_head = (v->rst_head + 1) % RST_RING;
			v->rst_count--;
			struct vsock_hdr h = {
				.src_cid = VSOCK_HOST_CID, .dst_cid = v->cid,
				.src_port = r.local_port, .dst_port = r.peer_port,
				.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
			};
			rx_send(d, v, &h, NULL);
			continue;
		}
		conn_emit(d, v, v->q_head);
	}
}

/* ---- packets from the guest ---- */

static int connect_host(const struct vsock *v, uint32_t port)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->uds_path, port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Nonblocking: a listener with a full backlog is refused (EAGAIN), not
	 * waited for with the device lock held. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_debug("vsock: guest connect to %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* REQUEST from the guest for a host port no connection uses. */
static void guest_connect(struct virtio_dev *d, struct vsock *v, const struct vsock_hdr *h)
{
	if (v->nr_conns >= v->max_conns) {
		rst_queue(v, h->dst_port, h->src_port);
		return;
	}
	int fd = connect_host(v, h->dst_port);
	if (fd < 0) {
		rst_queue(v, h->dst_port, h->src_port);
		return;
	}
	struct conn *c = conn_new(v, fd, CONN_ESTABLISHED);
	if (!c) {
		close(fd);
		rst_queue(v, h->dst_port, h->src_port);
		return;
	}
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pend = PEND_RESPONSE;
	hash_add(v, c);
	conn_sched(d, v, c);
}

/* The guest accepted a host-initiated connection: the host process hears
 * "OK <local port>\n" (a fresh socket has room for it). */
static void guest_accepted(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	char ok[24];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
	if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		conn_reset(d, v, c);
		return;
	}
	c->state = CONN_ESTABLISHED;
}

static void conn_packet(struct virtio_dev *d, struct vsock *v, struct conn *c,
			const struct vsock_hdr *h, const struct vq_chain *ch)
{
	if (c->state == CONN_CLOSING)
		return; /* our RST is on its way */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;

	switch (h->op) {
	case VSOCK_OP_RST:
		conn_free(d, v, c);
		return;
	case VSOCK_OP_RESPONSE:
		if (c->state != CONN_CONNECTING || (c->pend & PEND_REQUEST)) {
			d->errors++;
			conn_reset(d, v, c);
			return;
		}
		guest_accepted(d, v, c);
		break;
	case VSOCK_OP_RW: {
		if (c->state != CONN_ESTABLISHED || (c->peer_shut & VSOCK_SHUTDOWN_SEND) ||
		    h->len > VSOCK_BUF_ALLOC - c->buf_len) {
			/* Data before the handshake, after SHUTDOWN, or beyond the credit. */
			d->errors++;
			conn_reset(d, v, c);
			return;
		}
		if (!h->len)
			break;
		vq_chain_read(ch, VSOCK_HDR_SIZE, v->scratch, h->len);
		conn_write(d, v, c, v->scratch, h->len);
		if (c->state == CONN_CLOSING)
			return;
		break;
	}
	case VSOCK_OP_SHUTDOWN:
		c->peer_shut |= h->flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		if (c->state == CONN_ESTABLISHED && conn_drained(d, v, c) < 0)
			return;
		if (c->state == CONN_CONNECTING && (c->peer_shut & VSOCK_SHUTDOWN_RCV)) {
			conn_reset(d, v, c);
			return;
		}
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break; /* the credit fields above are the news */
	case VSOCK_OP_CREDIT_REQUEST:
		c->pend |= PEND_CREDIT;
		break;
	default: /* REQUEST on a live connection, unknown ops */
		d->errors++;
		conn_reset(d, v, c);
		return;
	}
	conn_sched(d, v, c);
}

static void tx_packet(struct virtio_dev *d, struct vsock *v, const struct vq_chain *ch)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr h;

	if (ch->readable_len < VSOCK_HDR_SIZE) {
		d->errors++;
		return;
	}
	/* One copy; every check and use below sees these values. */
	vq_chain_read(ch, 0, raw, sizeof(raw));
	vsock_hdr_decode(raw, &h);

	if (h.src_cid != v->cid || h.dst_cid != VSOCK_HOST_CID) {
		/* Not from this guest or not for us: nobody to answer. */
		d->errors++;
		log_debug("%s: dropped a packet from CID %llu to CID %llu", d->name,
			  (unsigned long long)h.src_cid, (unsigned long long)h.dst_cid);
		return;
	}
	struct conn *c = lookup(v, h.dst_port, h.src_port);
	if (h.type != VSOCK_TYPE_STREAM || h.len > VSOCK_MAX_PAYLOAD ||
	    h.len > ch->readable_len - VSOCK_HDR_SIZE) {
		d->errors++;
		if (c)
			conn_reset(d, v, c);
		else if (h.op != VSOCK_OP_RST)
			rst_queue(v, h.dst_port, h.src_port);
		return;
	}
	d->requests++;
	if (c)
		conn_packet(d, v, c, &h, ch);
	else if (h.op == VSOCK_OP_REQUEST)
		guest_connect(d, v, &h);
	else if (h.op != VSOCK_OP_RST)
		rst_queue(v, h.dst_port, h.src_port);
}

/* Reads the tx queue while a RST has room in the ring (each packet makes at
 * most one ring entry); tx_waiting says it stopped with chains left. */
static void tx_pump(struct virtio_dev *d, struct vsock *v)
{
	struct vq *q = v->env->queue(d, VSOCK_QUEUE_TX);
	v->tx_waiting = false;
	if (!q || v->broken)
		return;
	for (;;) {
		if (v->rst_count == RST_RING) {
			v->tx_waiting = true;
			return;
		}
		int r = vq_pop(q, &v->txc);
		if (r == VQ_EMPTY)
			return;
		if (r < 0) {
			broken(d, v, "tx", r);
			return;
		}
		tx_packet(d, v, &v->txc);
		vq_push(q, v->txc.head, 0);
		v->tx_pushed = true;
	}
}

/* Guest packets in, packets out; again while the tx queue waited for the RST
 * ring and the rx side made room in it. */
static void run(struct virtio_dev *d, struct vsock *v)
{
	if (!v->active)
		return;
	do {
		tx_pump(d, v);
		rx_pump(d, v);
	} while (v->tx_waiting && v->rst_count < RST_RING && !v->broken);
	if (v->tx_pushed) {
		v->tx_pushed = false;
		v->env->signal(d, VSOCK_QUEUE_TX);
	}
	if (v->rx_pushed) {
		v->rx_pushed = false;
		v->env->signal(d, VSOCK_QUEUE_RX);
	}
}

/* ---- host side: events ---- */

/* "CONNECT <port>" (the newline already stripped): the port, or -1. */
static long long parse_connect(const char *s)
{
	static const char prefix[] = "CONNECT ";
	if (strncmp(s, prefix, sizeof(prefix) - 1))
		return -1;
	s += sizeof(prefix) - 1;
	if (*s < '0' || *s > '9')
		return -1;
	long long port = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		port = port * 10 + (*s - '0');
		if (port > UINT32_MAX)
			return -1;
	}
	return port;
}

static bool alloc_local_port(struct vsock *v, uint32_t peer, uint32_t *out)
{
	/* At most max_conns connections: that many + 1 tries find a free pair. */
	for (unsigned i = 0; i <= v->max_conns; i++) {
		uint32_t p = v->next_port;
		v->next_port = p == VSOCK_LOCAL_PORT_LAST ? VSOCK_LOCAL_PORT_FIRST : p + 1;
		if (!lookup(v, p, peer)) {
			*out = p;
			return true;
		}
	}
	return false;
}

/* Reads the host's "CONNECT <port>\n" a byte at a time, so nothing after the
 * line is consumed: what the host sends next is for the guest. */
static void handshake(struct virtio_dev *d, struct vsock *v, struct conn *c)
{
	for (;;) {
		char ch;
		ssize_t n = recv(c->fd, &ch, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_free(d, v, c);
			return;
		}
		if (ch == '\n')
			break;
		if (c->line_len == sizeof(c->line) - 1) {
			log_debug("%s: host connection sent no CONNECT line", d->name);
			conn_free(d, v, c);
			return;
		}
		c->line[c->line_len++] = ch;
	}
	c->line[c->line_len] = '\0';
	long long port = parse_connect(c->line);
	uint32_t local;
	if (port < 0 || !alloc_local_port(v, (uint32_t)port, &local)) {
		log_debug("%s: bad host request '%s'", d->name, c->line);
		conn_free(d, v, c);
		return;
	}
	c->local_port = local;
	c->peer_port = (uint32_t)port;
	c->state = CONN_CONNECTING;
	c->pend = PEND_REQUEST;
	hash_add(v, c);
	conn_sched(d, v, c);
}

static void conn_event(struct virtio_dev *d, void *ctx, uint32_t events)
{
	struct vsock *v = dev_vsock(d);
	struct conn *c = ctx;

	if (c->state == CONN_HANDSHAKE) {
		handshake(d, v, c);
		run(d, v);
		return;
	}
	if (c->state == CONN_CONNECTING) {
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_reset(d, v, c); /* the guest hears RST if it saw the REQUEST */
		run(d, v);
		return;
	}
	if (c->buf_len && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
		if (conn_flush(c) < 0) {
			conn_reset(d, v, c);
			run(d, v);
			return;
		}
		credit_check(c);
		if (conn_drained(d, v, c) < 0) {
			run(d, v);
			return;
		}
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_can_read(c))
		c->data_ready = true;
	conn_sched(d, v, c);
	run(d, v);
}

static void listen_update(struct virtio_dev *d, struct vsock *v)
{
	bool want = v->active && !v->accept_paused;
	if (want == v->listen_watched)
		return;
	if (want) {
		if (v->env->watch(d, v->listen_fd, EPOLLIN, listen_event, NULL) < 0) {
			log_warn("%s: cannot watch the vsock socket %s", d->name, v->uds_path);
			return;
		}
	} else {
		v->env->unwatch(d, v->listen_fd);
	}
	v->listen_watched = want;
}

static void listen_event(struct virtio_dev *d, void *ctx, uint32_t events)
{
	struct vsock *v = dev_vsock(d);
	(void)ctx;
	(void)events;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The pending connection stays; retry when one of ours goes. */
				log_warn("%s: accept on %s: %s", d->name, v->uds_path, strerror(errno));
				v->accept_paused = true;
				listen_update(d, v);
			}
			break;
		}
		if (v->nr_conns >= v->max_conns) {
			log_debug("%s: too many vsock connections, refused one", d->name);
			close(fd);
			continue;
		}
		struct conn *c = conn_new(v, fd, CONN_HANDSHAKE);
		if (!c) {
			close(fd);
			break;
		}
		conn_sched(d, v, c);
	}
}

/* ---- device ops ---- */

static void vsock_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	uint8_t cfg[8];
	put64(cfg, dev_vsock(d)->cid);
	memcpy(data, cfg + off, len);
}

/* struct virtio_vsock_event: le32 id. */
#define VSOCK_EVENT_TRANSPORT_RESET 0
#define VSOCK_EVENT_SIZE 4

/* After a restore: tells the driver that every connection it had is gone.
 * Without an event buffer it stays owed until the guest gives one. */
static void send_transport_reset(struct virtio_dev *d, struct vsock *v)
{
	struct vq *q = v->env->queue(d, VSOCK_QUEUE_EVENT);
	if (!q || v->broken || !v->reset_pending)
		return;
	/* Bounded: a guest adding tiny buffers as fast as we return them must
	 * not keep the event thread here. */
	for (unsigned i = 0; i < VSOCK_QUEUE_SIZE; i++) {
		int r = vq_pop(q, &v->evc);
		if (r == VQ_EMPTY)
			return;
		if (r < 0) {
			broken(d, v, "event", r);
			return;
		}
		uint8_t ev[VSOCK_EVENT_SIZE];
		put32(ev, VSOCK_EVENT_TRANSPORT_RESET);
		if (vq_chain_write(&v->evc, 0, ev, sizeof(ev)) == sizeof(ev)) {
			vq_push(q, v->evc.head, sizeof(ev));
			v->reset_pending = false;
			v->env->signal(d, VSOCK_QUEUE_EVENT);
			return;
		}
		/* Too small for an event: back empty, try the next. */
		d->errors++;
		vq_push(q, v->evc.head, 0);
		v->env->signal(d, VSOCK_QUEUE_EVENT);
	}
}

static int vsock_activate(struct virtio_dev *d)
{
	struct vsock *v = dev_vsock(d);
	v->active = true;
	v->broken = false;
	listen_update(d, v);
	send_transport_reset(d, v);
	return 0;
}

static void vsock_notify(struct virtio_dev *d, unsigned q)
{
	struct vsock *v = dev_vsock(d);
	if (q == VSOCK_QUEUE_RX || q == VSOCK_QUEUE_TX)
		run(d, v);
	else if (q == VSOCK_QUEUE_EVENT)
		send_transport_reset(d, v); /* event buffers wait for events otherwise */
}

/* ---- snapshots ----
 * Quiesce gives a held rx chain back (tx chains are answered as they are
 * read). The device's own bytes: u64 guest CID, which the guest read and the
 * restored configuration must match. Connections stay behind: the restored
 * device owes the guest a TRANSPORT_RESET, sent when it activates. */
static void vsock_quiesce(struct virtio_dev *d)
{
	struct vsock *v = dev_vsock(d);
	struct vq *q = v->env->queue(d, VSOCK_QUEUE_RX);
	if (v->rx_held && q && q->inflight == 1 && vq_unpop(q, 1) == 0)
		v->rx_held = false;
}

static int vsock_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	if (virtio_dev_check_idle(d, 0, KITE_EXIT_ERROR, err) < 0)
		return -1;
	snapw_u64(w, dev_vsock(d)->cid);
	return 0;
}

static int vsock_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	struct vsock *v = dev_vsock(d);
	uint64_t cid = snapc_u64(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: vsock state is short", d->name);
	if (cid != v->cid)
		return err_set(err, KITE_EXIT_IMAGE, "%s: the guest saw CID %llu, this vsock has CID %u", d->name,
			       (unsigned long long)cid, v->cid);
	if (virtio_dev_check_idle(d, 0, KITE_EXIT_IMAGE, err) < 0)
		return -1;
	/* A driver that was running had connections; one that was not, none. */
	v->reset_pending = d->status & VIRTIO_STATUS_DRIVER_OK;
	return 0;
}

static void vsock_reset(struct virtio_dev *d)
{
	struct vsock *v = dev_vsock(d);
	while (v->all)
		conn_free(d, v, v->all);
	v->active = false;
	v->accept_paused = false;
	listen_update(d, v);
	v->rst_head = v->rst_count = 0;
	v->rx_held = false;
	v->rx_pushed = v->tx_pushed = false;
	v->broken = false;
	v->reset_pending = false;
}

static void vsock_destroy(struct virtio_dev *d)
{
	vsock_free(dev_vsock(d));
	d->priv = NULL;
}

const struct virtio_dev_ops vsock_ops = {
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.config_len = 8,
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.notify = vsock_notify,
	.reset = vsock_reset,
	.destroy = vsock_destroy,
	.save = vsock_save,
	.restore = vsock_restore,
	.quiesce = vsock_quiesce,
};

/* ---- set-up ---- */

static char *dir_of(const char *path, char *buf, size_t size)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(buf, size, ".");
	else if (slash == path)
		snprintf(buf, size, "/");
	else
		snprintf(buf, size, "%.*s", (int)(slash - path), path);
	return buf;
}

/* A socket file left by an earlier run goes; one somebody listens on, or a
 * file that is not a socket, stays and is an error. */
static int clear_stale(const char *path, const struct sockaddr_un *sa, struct kite_err *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0; /* bind reports missing directories */
	if (!S_ISSOCK(st.st_mode))
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path '%s' exists and is not a socket",
			       path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(err, KITE_EXIT_ERROR, "vsock: socket: %s", strerror(errno));
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN)
		return err_set(err, KITE_EXIT_ERROR,
			       "vsock uds_path '%s' is in use by another process", path);
	if (e != ECONNREFUSED)
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path '%s': %s", path, strerror(e));
	if (unlink(path) < 0)
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path '%s': cannot remove the stale socket: %s",
			       path, strerror(errno));
	return 0;
}

static int listen_uds(struct vsock *v, struct kite_err *err)
{
	const char *path = v->uds_path;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	/* Room for the longest "_<port>" suffix of guest-initiated connections. */
	size_t max = sizeof(sa.sun_path) - 1 - strlen("_4294967295");
	size_t len = strlen(path);
	if (!len)
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path is empty");
	if (len > max)
		return err_set(err, KITE_EXIT_ERROR,
			       "vsock uds_path '%s' is too long (%zu bytes, at most %zu)", path, len, max);
	memcpy(sa.sun_path, path, len);

	if (clear_stale(path, &sa, err) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(err, KITE_EXIT_ERROR, "vsock: socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		char dir[sizeof(sa.sun_path)];
		close(fd);
		if (e == ENOENT)
			return err_set(err, KITE_EXIT_ERROR,
				       "vsock uds_path '%s': directory '%s' does not exist", path,
				       dir_of(path, dir, sizeof(dir)));
		if (e == EADDRINUSE)
			return err_set(err, KITE_EXIT_ERROR,
				       "vsock uds_path '%s' is in use by another process", path);
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path '%s': %s", path, strerror(e));
	}
	struct stat st;
	if (listen(fd, 128) < 0 || stat(path, &st) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return err_set(err, KITE_EXIT_ERROR, "vsock uds_path '%s': %s", path, strerror(e));
	}
	v->listen_fd = fd;
	v->sock_dev = st.st_dev;
	v->sock_ino = st.st_ino;
	return 0;
}

struct vsock *vsock_new(const struct vsock_config *cfg, const struct vsock_env *env,
			struct kite_err *err)
{
	/* 0, 1 and 2 are the hypervisor, local and host; -1 is "any". */
	if (cfg->cid < 3 || cfg->cid == UINT32_MAX) {
		err_set(err, KITE_EXIT_ERROR, "vsock guest CID %u is reserved (use 3 to %u)", cfg->cid,
			UINT32_MAX - 1);
		return NULL;
	}
	if (!cfg->uds_path) {
		err_set(err, KITE_EXIT_ERROR, "vsock needs a uds_path");
		return NULL;
	}
	struct vsock *v = calloc(1, sizeof(*v));
	if (!v || !(v->uds_path = strdup(cfg->uds_path)) ||
	    vq_chain_alloc(&v->rxc, VSOCK_QUEUE_SIZE) < 0 ||
	    vq_chain_alloc(&v->txc, VSOCK_QUEUE_SIZE) < 0 ||
	    vq_chain_alloc(&v->evc, VSOCK_QUEUE_SIZE) < 0) {
		err_set(err, KITE_EXIT_ERROR, "vsock: out of memory");
		goto fail;
	}
	v->env = env;
	v->cid = cfg->cid;
	v->listen_fd = -1;
	v->max_conns = VSOCK_MAX_CONNS;
	v->next_port = VSOCK_LOCAL_PORT_FIRST;
	if (listen_uds(v, err) < 0)
		goto fail;
	return v;
fail:
	if (v) {
		vq_chain_free(&v->rxc);
		vq_chain_free(&v->txc);
		vq_chain_free(&v->evc);
		free(v->uds_path);
		free(v);
	}
	return NULL;
}

void vsock_free(struct vsock *v)
{
	if (!v)
		return;
	/* Only at teardown (the event thread stopped) or after a reset: no
	 * watches are left to undo, the sockets just close. */
	while (v->all) {
		struct conn *c = v->all;
		v->all = c->all_next;
		if (c->fd >= 0)
			close(c->fd);
		free(c->buf);
		free(c);
	}
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		struct stat st;
		if (stat(v->uds_path, &st) == 0 && st.st_dev == v->sock_dev && st.st_ino == v->sock_ino)
			unlink(v->uds_path);
	}
	vq_chain_free(&v->rxc);
	vq_chain_free(&v->txc);
	vq_chain_free(&v->evc);
	free(v->uds_path);
	free(v);
}

unsigned vsock_nr_conns(const struct vsock *v)
{
	return v->nr_conns;
}

void vsock_set_max_conns(struct vsock *v, unsigned max)
{
	v->max_conns = max;
}

/* ---- the device on the virtio-pci transport ---- */

static void env_needs_reset(struct virtio_dev *d, const char *why)
{
	virtio_dev_needs_reset(d, "%s", why);
}

static const struct vsock_env vsock_env_virtio = {
	.queue = virtio_dev_queue,
	.signal = virtio_dev_signal,
	.watch = virtio_dev_watch,
	.unwatch = virtio_dev_unwatch,
	.needs_reset = env_needs_reset,
};

static int vsock_create(struct vm *vm, struct kite_err *err)
{
	const struct vsock_config *cfg = &vm->cfg->vsock;
	if (!cfg->enabled)
		return 0;
	struct vsock *v = vsock_new(cfg, &vsock_env_virtio, err);
	if (!v)
		return -1;
	if (!virtio_pci_create(vm, &vsock_ops, v, 0, "virtio-vsock0", err)) {
		vsock_free(v);
		return -1;
	}
	return 0;
}

KITE_DEVICE(vsock, {.name = "vsock", .create = vsock_create});
