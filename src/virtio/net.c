/* virtio-net: the device side of the rx and tx queues over a backend fd (a
 * TAP, see tap.c). Everything runs on the device's event thread or a vCPU with
 * d->lock held (virtio.h), so the state in struct net_dev needs no lock.
 *
 * Waiting without spinning: the backend fd is watched for EPOLLIN only while
 * the guest has given rx buffers (rx_blocked clear), and for EPOLLOUT only
 * while a tx frame met EAGAIN or a tx batch stopped early. An empty rx queue
 * ends reading until the guest kicks it; vq_pop() has then asked for that kick
 * (EVENT_IDX avail_event), so none is lost. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapfile.h"
#include "virtio/net.h"

#include "stats/stats.h"
#include "vmm/vm.h"

/* virtio_net_hdr flags and gso_type values (virtio 1.x, 5.1.6). */
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_HDR_GSO_TYPE 1
#define NET_HDR_GSO_NONE 0
#define NET_HDR_GSO_TCPV4 1
#define NET_HDR_GSO_TCPV6 4
#define NET_HDR_GSO_ECN 0x80

void net_default_mac(unsigned index, uint8_t mac[6])
{
	const uint8_t base[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x00};
	memcpy(mac, base, 6);
	mac[5] = (uint8_t)index;
}

struct net_dev *net_dev_new(int fd, bool is_tap, const uint8_t mac[6], const char *id)
{
	struct net_dev *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->fd = -1;
	n->timer_fd = -1;
	n->rx_buf = malloc(NET_MAX_FRAME);
	if (!n->rx_buf || vq_chain_alloc(&n->rx_first, NET_QUEUE_SIZE) < 0 ||
	    vq_chain_alloc(&n->rx_next, NET_QUEUE_SIZE) < 0 ||
	    vq_chain_alloc(&n->tx_chain, NET_QUEUE_SIZE) < 0) {
		net_dev_free(n);
		return NULL;
	}
	n->fd = fd;
	n->is_tap = is_tap;
	memcpy(n->mac, mac, 6);
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->rx_blocked = true;
	return n;
}

void net_dev_free(struct net_dev *n)
{
	if (!n)
		return;
	if (n->fd >= 0)
		close(n->fd);
	if (n->timer_fd >= 0)
		close(n->timer_fd);
	vq_chain_free(&n->rx_first);
	vq_chain_free(&n->rx_next);
	vq_chain_free(&n->tx_chain);
	free(n->rx_buf);
	free(n);
}

/* ---- state changes ---- */

/* The driver broke a queue: NEEDS_RESET, and quiet until it resets us. */
static void queue_broken(struct virtio_dev *d, struct net_dev *n, const char *q, const char *why)
{
	n->broken = true;
	virtio_dev_needs_reset(d, "%s queue: %s", q, why);
}

/* The backend failed for good (the TAP was deleted): tx frames are dropped
 * from now on, so the guest's queue keeps moving, and nothing is received. */
static void backend_dead(struct net_dev *n, const char *why)
{
	if (!n->dead)
		log_error("network interface '%s': backend failed (%s): frames are dropped", n->id,
			  why);
	n->dead = true;
}

/* Makes the watch on the backend match what the device waits for. Inactive,
 * broken or dead devices are not registered at all: epoll reports errors and
 * hang-ups even on an fd watched for no event. */
static void update_watch(struct virtio_dev *d, struct net_dev *n)
{
	if (!n->active || n->broken || n->dead) {
		if (n->watching)
			virtio_dev_unwatch(d, n->fd);
		n->watching = false;
		n->events = 0;
		return;
	}
	uint32_t want = 0;
	if (!n->rx_blocked && !n->rx_throttled)
		want |= EPOLLIN;
	if ((n->tx_pending || n->tx_more) && !n->tx_throttled)
		want |= EPOLLOUT;
	if (want == n->events && (n->watching || !want))
		return;
	if (virtio_dev_watch(d, n->fd, want, net_backend_ready, n) < 0) {
		/* An earlier registration with other events may remain. */
		virtio_dev_unwatch(d, n->fd);
		n->broken = true;
		n->watching = false;
		n->events = 0;
		virtio_dev_needs_reset(d, "cannot watch the backend of network interface '%s'",
				       n->id);
		return;
	}
	n->watching = true;
	n->events = want;
}

static void count_bad_chain(struct virtio_dev *d, struct net_dev *n)
{
	n->bad_chains++;
	d->errors++;
}

/* ---- receive ---- */

enum { RX_NONE, RX_FRAME, RX_DROPPED };
#define RX_ERR_SMALL (-100) /* with the vq_error codes */

static const char *rx_strerror(int r)
{
	return r == RX_ERR_SMALL ? "buffer smaller than the 12-byte header" : vq_strerror(r);
}

/* Every rx chain must have room for the header (virtio 5.1.6.3.1: with
 * MRG_RXBUF each buffer holds at least one; without it the whole frame goes
 * into one chain). A driver that breaks this gets NEEDS_RESET: refusing the
 * chain and popping the next could go on as long as the guest refills. */
static int rx_pop(struct vq *vq, struct vq_chain *c)
{
	int r = vq_pop(vq, c);
	if (r == VQ_CHAIN && c->writable_len < NET_HDR_LEN)
		return RX_ERR_SMALL;
	return r;
}

/* Whether the guest accepted what the header asks of it: partial checksums
 * and segmentation offloads only when negotiated (frames the TAP queued
 * before a reset may still carry them). Clears flags the guest did not ask
 * for: without GUEST_CSUM the device sets flags to 0 (virtio 5.1.6.4.1). */
static bool rx_header_ok(struct virtio_dev *d, uint8_t *hdr)
{
	uint8_t gso = hdr[NET_HDR_GSO_TYPE] & (uint8_t)~NET_HDR_GSO_ECN;
	if (!virtio_has_feature(d, VIRTIO_NET_F_GUEST_CSUM)) {
		if (hdr[NET_HDR_FLAGS] & NET_HDR_F_NEEDS_CSUM)
			return false;
		hdr[NET_HDR_FLAGS] = 0;
	}
	if (hdr[NET_HDR_GSO_TYPE] & NET_HDR_GSO_ECN)
		return false; /* GUEST_ECN is not offered */
	switch (gso) {
	case NET_HDR_GSO_NONE:
		return true;
	case NET_HDR_GSO_TCPV4:
		return virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO4);
	case NET_HDR_GSO_TCPV6:
		return virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO6);
	}
	return false;
}

/* Reads one frame into the bounce buffer. */
static int rx_read(struct virtio_dev *d, struct net_dev *n)
{
	ssize_t r;
	do
		r = read(n->fd, n->rx_buf, NET_MAX_FRAME);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return RX_NONE;
		/* The frame was consumed and lost (the TAP drops it on a failed
		 * copy); anything else means the TAP is gone. */
		if (e == EFAULT || e == EINVAL || e == EMSGSIZE || e == ENOBUFS) {
			n->rx_dropped++;
			if (!n->warned_rx)
				log_warn("network interface '%s': receive: %s", n->id, strerror(e));
			n->warned_rx = true;
			return RX_DROPPED;
		}
		backend_dead(n, strerror(e));
		return RX_NONE;
	}
	if ((size_t)r < NET_HDR_LEN || !rx_header_ok(d, n->rx_buf)) {
		n->rx_dropped++;
		return RX_DROPPED;
	}
	/* One buffer unless the frame spreads over several (rx_deliver). */
	n->rx_buf[NET_HDR_NUM_BUFFERS] = 1;
	n->rx_buf[NET_HDR_NUM_BUFFERS + 1] = 0;
	n->rx_len = (uint32_t)r;
	n->rx_off = 0;
	n->rx_nused = 0;
	return RX_FRAME;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Copies the frame in the bounce buffer into rx_first and, with MRG_RXBUF,
 * as many more chains as it needs, then hands them all to the guest at once:
 * the driver takes num_buffers consecutive used entries as one frame. At most
 * queue-size chains: vq_pop() keeps no more in flight. 1: done (delivered or
 * dropped), 0: waiting for buffers (the chains so far stay with us), <0: the
 * queue broke. */
static int rx_deliver(struct virtio_dev *d, struct net_dev *n, struct vq *vq)
{
	if (n->rx_nused == 0) {
		if (!virtio_has_feature(d, VIRTIO_NET_F_MRG_RXBUF) &&
		    n->rx_len > n->rx_first.writable_len) {
			/* Does not fit the guest's buffer: drop the frame and
			 * keep the chain for the next one. */
			n->rx_dropped++;
			n->rx_len = 0;
			return 1;
		}
		uint32_t k = min_u32(n->rx_len, n->rx_first.writable_len);
		vq_chain_write(&n->rx_first, 0, n->rx_buf, k);
		n->rx_used[0] = (struct net_used){n->rx_first.head, k};
		n->rx_nused = 1;
		n->rx_off = k;
	}
	while (n->rx_off < n->rx_len) {
		int r = rx_pop(vq, &n->rx_next);
		if (r < 0)
			return r;
		if (r == VQ_EMPTY) {
			n->rx_blocked = true;
			return 0;
		}
		if (n->rx_nused >= NET_QUEUE_SIZE) /* the transport bounds the queue size */
			return VQ_ERR_TOO_LONG;
		uint32_t k = min_u32(n->rx_len - n->rx_off, n->rx_next.writable_len);
		vq_chain_write(&n->rx_next, 0, n->rx_buf + n->rx_off, k);
		n->rx_used[n->rx_nused++] = (struct net_used){n->rx_next.head, k};
		n->rx_off += k;
	}
	if (n->rx_nused > 1) {
		uint16_t nb = htole16((uint16_t)n->rx_nused);
		vq_chain_write(&n->rx_first, NET_HDR_NUM_BUFFERS, &nb, sizeof(nb));
	}
	for (uint32_t i = 0; i < n->rx_nused; i++)
		if (vq_push(vq, n->rx_used[i].head, n->rx_used[i].len) < 0)
			return VQ_ERR_PUSH;
	n->rx_frames++;
	n->rx_bytes += n->rx_len - NET_HDR_LEN;
	d->requests++;
	n->rx_len = 0;
	n->rx_nused = 0;
	n->rx_have_first = false;
	return 1;
}

/* ---- rate limiting ---- */

/* Whether `bytes` may pass in this direction now; else arms the timer for
 * when they may (the direction is throttled until it fires). */
static bool rl_allows(struct virtio_dev *d, struct net_dev *n, struct rate_limiter *rl, bool *throttled,
		   uint32_t bytes)
{
	uint64_t now = stats_now_ns();
	if (rl_consume(rl, bytes, now))
		return true;
	*throttled = true;
	if (n->timer_fd >= 0) {
		uint64_t wait = rl_wait_ns(rl, bytes, now);
		struct itimerspec cur, it = {.it_value = {.tv_sec = (time_t)(wait / 1000000000u),
							  .tv_nsec = (long)(wait % 1000000000u)}};
		/* The earlier of the two directions' deadlines wins. */
		timerfd_gettime(n->timer_fd, &cur);
		uint64_t left = (uint64_t)cur.it_value.tv_sec * 1000000000u + (uint64_t)cur.it_value.tv_nsec;
		if ((left == 0 || wait < left) && timerfd_settime(n->timer_fd, 0, &it, NULL) < 0)
			virtio_dev_needs_reset(d, "network interface '%s': rate limiter timer: %s", n->id,
					       strerror(errno));
	}
	return false;
}

static void rx_process(struct virtio_dev *d, struct net_dev *n);
static void tx_process(struct virtio_dev *d, struct net_dev *n);

static void on_timer(struct virtio_dev *d, void *ctx, uint32_t events)
{
	(void)events;
	struct net_dev *n = ctx;
	uint64_t x;
	if (read(n->timer_fd, &x, sizeof(x)) < 0)
		return;
	n->rx_throttled = n->tx_throttled = false;
	if (n->active && !n->broken) {
		tx_process(d, n);
		if (!n->broken)
			rx_process(d, n);
	}
	update_watch(d, n);
}

/* Receives until the backend has no frame, the guest no buffer, or the batch
 * is done (EPOLLIN is still watched then, and level-triggered). */
static void rx_process(struct virtio_dev *d, struct net_dev *n)
{
	struct vq *vq = virtio_dev_queue(d, NET_RXQ);
	if (!vq || n->dead) {
		n->rx_blocked = true;
		return;
	}
	uint64_t frames = n->rx_frames;
	int r = 0;
	for (unsigned budget = NET_BATCH; budget && !n->dead; budget--) {
		/* A buffer first: without one the frame stays in the TAP. */
		if (!n->rx_have_first) {
			r = rx_pop(vq, &n->rx_first);
			if (r < 0)
				break;
			if (r == VQ_EMPTY) {
				n->rx_blocked = true;
				break;
			}
			n->rx_have_first = true;
		}
		n->rx_blocked = false;
		if (n->rx_throttled)
			break;
		if (n->rx_len == 0) {
			int got = rx_read(d, n);
			if (got == RX_NONE)
				break;
			if (got == RX_DROPPED)
				continue;
			/* A frame read is a frame to account for, once: it
			 * waits in the bounce buffer while over budget. */
			n->rx_charged = false;
		}
		if (n->rx_limited && !n->rx_charged) {
			if (!rl_allows(d, n, &n->rx_rl, &n->rx_throttled, n->rx_len - NET_HDR_LEN))
				break;
			n->rx_charged = true;
		}
		r = rx_deliver(d, n, vq);
		if (r <= 0)
			break;
	}
	if (r < 0)
		queue_broken(d, n, "rx", rx_strerror(r));
	if (n->rx_frames != frames)
		virtio_dev_signal(d, NET_RXQ);
}

/* ---- transmit ---- */

/* Writes the pending tx chain (header and frame) to the backend. 1: sent or
 * dropped (the chain is done), 0: EAGAIN (keep it, wait for EPOLLOUT). */
static int tx_send(struct net_dev *n)
{
	if (n->dead) {
		n->tx_dropped++;
		return 1;
	}
	const struct vq_chain *c = &n->tx_chain;
	struct iovec iov[NET_QUEUE_SIZE];
	uint32_t nr = min_u32(c->nr_readable, NET_QUEUE_SIZE);
	for (uint32_t i = 0; i < nr; i++)
		iov[i] = (struct iovec){c->buf[i].hva, c->buf[i].len};
	ssize_t r;
	do
		r = writev(n->fd, iov, (int)nr);
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		n->tx_frames++;
		n->tx_bytes += c->readable_len - NET_HDR_LEN;
		return 1;
	}
	int e = errno;
	if (e == EAGAIN || e == EWOULDBLOCK) {
		n->tx_eagain++;
		return 0;
	}
	if (e == EBADFD) {
		backend_dead(n, strerror(e));
	} else if (!n->warned_tx) {
		/* EIO: the TAP is down; EINVAL: a header the TAP refused. */
		log_warn("network interface '%s': transmit: %s (frame dropped)", n->id,
			 strerror(e));
		n->warned_tx = true;
	}
	n->tx_dropped++;
	return 1;
}

static void tx_process(struct virtio_dev *d, struct net_dev *n)
{
	struct vq *vq = virtio_dev_queue(d, NET_TXQ);
	if (!vq)
		return;
	bool pushed = false;
	unsigned budget = NET_BATCH;
	n->tx_more = false;
	for (;;) {
		if (!n->tx_pending) {
			if (budget == 0) {
				/* Yield: the backend is writable, so EPOLLOUT
				 * brings us back after other events. */
				n->tx_more = true;
				break;
			}
			budget--;
			int r = vq_pop(vq, &n->tx_chain);
			if (r < 0) {
				queue_broken(d, n, "tx", vq_strerror(r));
				break;
			}
			if (r == VQ_EMPTY)
				break;
			/* Too short for the header, or longer than any frame
			 * (64 KiB GSO at most): the guest's mistake, dropped. */
			if (n->tx_chain.readable_len < NET_HDR_LEN ||
			    n->tx_chain.readable_len > NET_MAX_FRAME) {
				count_bad_chain(d, n);
				if (vq_push(vq, n->tx_chain.head, 0) < 0) {
					queue_broken(d, n, "tx", vq_strerror(VQ_ERR_PUSH));
					break;
				}
				pushed = true;
				continue;
			}
			n->tx_pending = true;
			n->tx_charged = false;
		}
		if (n->tx_limited && !n->tx_charged) {
			if (n->tx_throttled ||
			    !rl_allows(d, n, &n->tx_rl, &n->tx_throttled, n->tx_chain.readable_len - NET_HDR_LEN))
				break;
			n->tx_charged = true;
		}
		if (!tx_send(n))
			break;
		n->tx_pending = false;
		d->requests++;
		if (vq_push(vq, n->tx_chain.head, 0) < 0) {
			queue_broken(d, n, "tx", vq_strerror(VQ_ERR_PUSH));
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_dev_signal(d, NET_TXQ);
}

/* ---- the device ---- */

void net_backend_ready(struct virtio_dev *d, void *ctx, uint32_t events)
{
	struct net_dev *n = ctx;
	if (n->active && !n->broken) {
		if (events & (EPOLLERR | EPOLLHUP)) {
			backend_dead(n, events & EPOLLERR ? "error condition" : "hang-up");
		} else {
			if (events & EPOLLOUT)
				tx_process(d, n);
			if ((events & EPOLLIN) && !n->broken)
				rx_process(d, n);
		}
	}
	update_watch(d, n);
}

static void net_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct net_dev *n = d->priv;
	uint8_t cfg[NET_CONFIG_LEN];
	memcpy(cfg, n->mac, 6);
	uint16_t status = htole16(VIRTIO_NET_S_LINK_UP);
	memcpy(cfg + 6, &status, 2);
	if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
		memcpy(data, cfg + off, len);
}

static int net_activate(struct virtio_dev *d)
{
	struct net_dev *n = d->priv;
	n->active = true;
	n->broken = false;
	n->rx_blocked = true;
	if (n->is_tap && !n->dead) {
		unsigned flags = n->guest_offloads ? tap_offload_flags(d->guest_features) : 0;
		if (tap_set_offload(n->fd, flags) < 0)
			log_warn("network interface '%s': TAP offloads: %s", n->id,
				 strerror(errno));
	}
	n->rx_throttled = n->tx_throttled = false;
	if (n->timer_fd >= 0 && virtio_dev_watch(d, n->timer_fd, EPOLLIN, on_timer, n) < 0)
		return -1;
	/* The transport calls notify for both queues next: that pops the
	 * first rx buffer and starts watching the backend. */
	return 0;
}

static void net_notify(struct virtio_dev *d, unsigned q)
{
	struct net_dev *n = d->priv;
	if (!n->active || n->broken)
		return;
	if (q == NET_RXQ)
		rx_process(d, n);
	else if (q == NET_TXQ)
		tx_process(d, n);
	update_watch(d, n);
}

static void net_reset(struct virtio_dev *d)
{
	struct net_dev *n = d->priv;
	n->active = false;
	n->broken = false;
	update_watch(d, n);
	/* Chains in flight are forgotten, not pushed; data already copied
	 * into rx buffers is the driver's to ignore. */
	n->rx_len = n->rx_off = n->rx_nused = 0;
	n->rx_have_first = false;
	n->rx_blocked = true;
	n->tx_pending = n->tx_more = false;
	n->rx_throttled = n->tx_throttled = false;
	if (n->timer_fd >= 0) {
		struct itimerspec off = {0};
		timerfd_settime(n->timer_fd, 0, &off, NULL);
		virtio_dev_unwatch(d, n->timer_fd);
	}
	/* A later driver may accept fewer offloads. */
	if (n->is_tap && !n->dead)
		tap_set_offload(n->fd, 0);
}

static void net_destroy(struct virtio_dev *d)
{
	net_dev_free(d->priv);
	d->priv = NULL;
}

/* ---- snapshots ----
 * Nothing is in flight in a snapshot. Quiesce drops a received frame that is
 * half delivered or waiting for budget (a lost frame, as on a wire; the data
 * already copied sits in buffers the driver never gets) and gives the rx
 * chains held for it back to the queue, and a tx chain waiting for the TAP or
 * the limiter too: it is popped and sent again afterwards. The device's own
 * bytes: the MAC the guest read. The offloads the driver accepted go back onto
 * the TAP when the restored device activates (TUNSETOFFLOAD from the guest
 * features, as at DRIVER_OK). */
static void net_quiesce(struct virtio_dev *d)
{
	struct net_dev *n = d->priv;
	struct vq *rx = virtio_dev_queue(d, NET_RXQ), *tx = virtio_dev_queue(d, NET_TXQ);
	if (n->broken)
		return; /* NEEDS_RESET: the reset forgets it all */
	/* rx_first, and with it the chains of a frame spread over several. */
	uint32_t held = n->rx_nused ? n->rx_nused : n->rx_have_first;
	if (rx && held && rx->inflight == held && vq_unpop(rx, (uint16_t)held) == 0) {
		if (n->rx_len)
			n->rx_dropped++;
		n->rx_len = n->rx_off = n->rx_nused = 0;
		n->rx_have_first = false;
		n->rx_charged = false;
	}
	if (tx && n->tx_pending && tx->inflight == 1 && vq_unpop(tx, 1) == 0) {
		n->tx_pending = false;
		n->tx_charged = false;
	}
}

static int net_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	if (virtio_dev_check_idle(d, 0, KITE_EXIT_ERROR, err) < 0)
		return -1;
	struct net_dev *n = d->priv;
	snapw_bytes(w, n->mac, 6);
	return 0;
}

static int net_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	struct net_dev *n = d->priv;
	uint8_t mac[6];
	snapc_bytes(c, mac, sizeof(mac));
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: network state is short", d->name);
	if (memcmp(mac, n->mac, 6) != 0)
		return err_set(err, KITE_EXIT_IMAGE,
			       "%s: the guest saw MAC %02x:%02x:%02x:%02x:%02x:%02x, interface '%s' has %02x:%02x:%02x:%02x:%02x:%02x",
			       d->name, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], n->id, n->mac[0], n->mac[1],
			       n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	return virtio_dev_check_idle(d, 0, KITE_EXIT_IMAGE, err);
}

const struct virtio_dev_ops net_ops = {
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max_size = NET_QUEUE_SIZE,
	.config_len = NET_CONFIG_LEN,
	.config_read = net_config_read,
	.activate = net_activate,
	.notify = net_notify,
	.reset = net_reset,
	.destroy = net_destroy,
	.save = net_save,
	.restore = net_restore,
	.quiesce = net_quiesce,
};

static int net_create(struct vm *vm, struct kite_err *err)
{
	const struct vm_config *cfg = vm->cfg;
	for (unsigned i = 0; i < cfg->nr_nics && i < KITE_MAX_NICS; i++) {
		const struct net_config *nc = &cfg->nics[i];
		char id[64], name[32];
		if (nc->id)
			snprintf(id, sizeof(id), "%s", nc->id);
		else
			snprintf(id, sizeof(id), "net%u", i);
		uint8_t mac[6];
		if (nc->has_mac)
			memcpy(mac, nc->mac, 6);
		else
			net_default_mac(i, mac);

		bool offloads;
		int fd = tap_open(id, nc->tap ? nc->tap : "", &offloads, err);
		if (fd < 0)
			return -1;
		struct net_dev *n = net_dev_new(fd, true, mac, id);
		if (!n) {
			close(fd);
			return err_set(err, KITE_EXIT_ERROR, "network interface '%s': out of memory",
				       id);
		}
		n->guest_offloads = offloads;
		n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (n->timer_fd < 0) {
			net_dev_free(n);
			return err_set(err, KITE_EXIT_ERROR, "network interface '%s': timerfd: %s", id,
				       strerror(errno));
		}
		uint64_t now = stats_now_ns();
		n->rx_limited = rl_config_active(&nc->rx_rl);
		n->tx_limited = rl_config_active(&nc->tx_rl);
		rl_init(&n->rx_rl, &nc->rx_rl, now);
		rl_init(&n->tx_rl, &nc->tx_rl, now);
		uint64_t features = NET_FEATURES_BASE | (offloads ? NET_FEATURES_GUEST_OFFLOADS : 0);
		snprintf(name, sizeof(name), "virtio-net%u", i);
		if (!virtio_pci_create(vm, &net_ops, n, features, name, err)) {
			net_dev_free(n);
			return -1;
		}
	}
	return 0;
}

KITE_DEVICE(virtio_net, {.name = "virtio-net", .create = net_create});

int net_set_rate_limiters(struct vm *vm, const char *id, const struct rl_config *rx,
			  const struct rl_config *tx)
{
	for (struct virtio_dev *d = virtio_dev_next(vm, NULL); d; d = virtio_dev_next(vm, d)) {
		if (d->ops != &net_ops)
			continue;
		pthread_mutex_lock(&d->lock);
		struct net_dev *n = d->priv;
		if (!n || strcmp(n->id, id) != 0) {
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		uint64_t now = stats_now_ns();
		if (rx) {
			rl_update(&n->rx_rl, rx, now);
			n->rx_limited = rl_config_active(rx);
		}
		if (tx) {
			rl_update(&n->tx_rl, tx, now);
			n->tx_limited = rl_config_active(tx);
		}
		/* Whatever waited, waits under the new limits: try again now. */
		if (n->timer_fd >= 0 && n->active) {
			struct itimerspec soon = {.it_value = {.tv_nsec = 1}};
			timerfd_settime(n->timer_fd, 0, &soon, NULL);
		}
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	return -1;
}
