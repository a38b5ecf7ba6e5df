/* virtio-net over a host TAP device (net.c: the device, tap.c: the backend).
 *
 * Two queues, rx (0) and tx (1); no control queue. The device offers checksum
 * and TSO offloads both ways, mergeable receive buffers, the MAC in config
 * space and a link status that is always up. Every frame on the virtqueues and
 * on the TAP starts with the 12-byte virtio_net_hdr_v1 (num_buffers included):
 * the TAP is told that size, so frames pass between guest and TAP unchanged.
 *
 * Receive copies through one bounce buffer: a frame read from the TAP is copied
 * into as many rx chains as it needs (MRG_RXBUF), and while the guest gives no
 * buffers the device stops reading, leaving frames queued in the TAP. Transmit
 * hands the guest's buffers to writev() as they are. The backend is any file
 * descriptor that keeps frame boundaries (a TAP; a datagram socket in the unit
 * tests). This header shows the device's state so tests can drive it. */
#ifndef KITE_VIRTIO_NET_H
#define KITE_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "virtio/virtio.h"

/* Feature bits (virtio 1.x, 5.1.3). */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

/* The guest-to-device offloads the TAP always takes; the device-to-guest ones
 * (GUEST_*) are offered only when the TAP accepts TUNSETOFFLOAD. */
#define NET_FEATURES_BASE                                                              \
	(VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) |          \
	 VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |           \
	 VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_STATUS))
#define NET_FEATURES_GUEST_OFFLOADS                                                    \
	(VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |   \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6))

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_QUEUE_SIZE 256
/* struct virtio_net_hdr_v1: flags, gso_type, le16 hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers. */
#define NET_HDR_LEN 12
#define NET_HDR_FLAGS 0
#define NET_HDR_NUM_BUFFERS 10
/* The largest frame with its header the TAP hands us: a 64 KiB GSO packet,
 * its Ethernet and VLAN headers, the virtio header. */
#define NET_MAX_FRAME 65562
/* Frames handled per wake-up in each direction, so one busy direction (or a
 * guest refilling its tx ring as fast as we drain it) cannot hold the lock
 * for long; the rest waits for the next event-loop round. */
#define NET_BATCH 64
/* Config space: mac[6], le16 status. */
#define NET_CONFIG_LEN 8

struct net_used {
	uint16_t head;
	uint32_t len;
};

struct net_dev {
	int fd;           /* the backend: TAP, or a socket in the tests */
	bool is_tap;      /* TUNSETOFFLOAD applies */
	bool guest_offloads; /* GUEST_* offered (the TAP accepts offloads) */
	uint8_t mac[6];
	char id[64];      /* the interface id, for messages */

	bool active;      /* between activate and reset */
	bool broken;      /* NEEDS_RESET set: quiet until reset */
	bool dead;        /* the backend failed for good (TAP deleted): tx drops */
	uint32_t events;  /* what we watch the fd for now (EPOLLIN/EPOLLOUT) */
	bool watching;    /* the fd is registered with the event thread */

	/* rx: the frame in the bounce buffer (rx_len bytes, header included,
	 * 0 when none), the part of it already copied into chains, and those
	 * chains: the first one kept whole (num_buffers goes into its header
	 * once the count is known), the others as (head, len) only. */
	uint8_t *rx_buf;
	uint32_t rx_len, rx_off;
	struct vq_chain rx_first;
	bool rx_have_first;    /* rx_first holds a popped chain */
	struct vq_chain rx_next;
	struct net_used rx_used[NET_QUEUE_SIZE];
	uint32_t rx_nused;
	bool rx_blocked;       /* no rx buffers: not reading the fd until a kick */

	/* tx: a chain that met EAGAIN, written again on EPOLLOUT. */
	struct vq_chain tx_chain;
	bool tx_pending;
	bool tx_more;          /* a batch ended with chains left in the queue */

	/* Counters: frames and bytes (virtio header excluded) that crossed,
	 * frames dropped, malformed chains. */
	uint64_t rx_frames, rx_bytes, rx_dropped;
	uint64_t tx_frames, tx_bytes, tx_dropped, tx_eagain;
	uint64_t bad_chains;
	bool warned_rx, warned_tx;

	/* Rate limiters (rx_rate_limiter, tx_rate_limiter): a direction over
	 * budget stops (rx keeps its frame in the bounce buffer, tx its chain)
	 * until the timer fires. timer_fd is -1 in unit tests without one. */
	struct rate_limiter rx_rl, tx_rl;
	bool rx_limited, tx_limited;
	bool rx_throttled, tx_throttled;
	bool rx_charged, tx_charged; /* the frame in hand was counted */
	int timer_fd;
};

/* PATCH /network-interfaces/{id}: new limits for a running interface (NULL:
 * leave that direction as it is). 0, or -1 when no interface has that id. */
int net_set_rate_limiters(struct vm *vm, const char *id, const struct rl_config *rx,
			  const struct rl_config *tx);

extern const struct virtio_dev_ops net_ops;

/* A device over backend fd (taken over: closed by net_dev_free). NULL on ENOMEM. */
struct net_dev *net_dev_new(int fd, bool is_tap, const uint8_t mac[6], const char *id);
void net_dev_free(struct net_dev *n);

/* The event-thread callback for the backend fd (EPOLLIN: frames to receive,
 * EPOLLOUT: room to send again). */
void net_backend_ready(struct virtio_dev *d, void *ctx, uint32_t events);

/* The MAC an interface gets without mac=: locally administered, unicast,
 * 06:00:AC:10:00:<index>. */
void net_default_mac(unsigned index, uint8_t mac[6]);

/* tap.c. Opens TAP `name` (created, not persistent, when it does not exist)
 * nonblocking, with the 12-byte virtio header, offloads off. *offloads tells
 * whether it accepts TUNSETOFFLOAD. The fd, or -1 with err set (exit code 1):
 * "network interface 'ID': TAP 'NAME': <why>". */
int tap_open(const char *id, const char *name, bool *offloads, struct kite_err *err);
/* TUN_F_* flags for what the guest accepted (GUEST_* features). */
unsigned tap_offload_flags(uint64_t guest_features);
/* Sets them on the TAP; 0 or -1 (errno). */
int tap_set_offload(int fd, unsigned flags);

#endif
