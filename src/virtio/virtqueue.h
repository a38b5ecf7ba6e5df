/* The device side of a virtio 1.x split virtqueue, over checked guest memory.
 *
 * The guest is hostile: it writes the descriptor table and the available ring
 * while we read them. So every field shared with the guest is read once into a
 * local, then validated, then used; every index is checked against the queue
 * size; every buffer is translated for its whole length by gmem_ptr(); chains are
 * bounded by the queue size (a descriptor loop shows up as a chain that is too
 * long). A malformed chain is an error code, never an assert: the queue turns
 * broken (every later pop fails) and the device sets DEVICE_NEEDS_RESET.
 *
 * Rules the driver must follow and this core enforces (virtio 1.x, 2.7):
 *  - queue size a power of two, 1..32768; descriptor table 16-aligned, available
 *    ring 2-aligned, used ring 4-aligned; each ring of its full size (16*N, 6+2*N,
 *    6+8*N bytes, event fields included) inside one RAM region;
 *  - chains made available and not yet used (popped or not) never number more
 *    than the queue size: the available index cannot run further ahead;
 *  - a chain has at most queue-size buffers, device-readable ones first, at most
 *    2^32 - 1 bytes in total, and no zero-length buffer (refused, as QEMU does:
 *    no driver needs one and it would name an address without a byte to check);
 *  - INDIRECT only when negotiated, only on the last descriptor of a chain (not
 *    with NEXT), never inside an indirect table; a table is a non-zero multiple of
 *    16 bytes with at most queue-size entries, and NEXT inside it indexes the
 *    table. The WRITE flag of the descriptor naming a table is ignored.
 *
 * Not thread-safe: one thread (or lock) per queue. Host pointers to the rings
 * and buffers stay valid as long as the struct gmem does. */
#ifndef KITE_VIRTQUEUE_H
#define KITE_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

#define VQ_MAX_SIZE 32768

#define VQ_DESC_F_NEXT 1
#define VQ_DESC_F_WRITE 2
#define VQ_DESC_F_INDIRECT 4
#define VQ_AVAIL_F_NO_INTERRUPT 1
#define VQ_USED_F_NO_NOTIFY 1

#define VQ_DESC_SIZE 16 /* struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next */

/* vq_pop() returns VQ_CHAIN, VQ_EMPTY or one of the negative errors below. */
enum {
	VQ_EMPTY = 0,
	VQ_CHAIN = 1,
};

enum vq_error {
	VQ_ERR_CONFIG = -1,    /* vq_init: bad size, misaligned or not in RAM */
	VQ_ERR_BROKEN = -2,    /* an earlier error broke the queue; reset it */
	VQ_ERR_AVAIL_IDX = -3, /* more chains available (+ in flight) than the queue size */
	VQ_ERR_HEAD = -4,      /* avail ring entry >= queue size */
	VQ_ERR_NEXT = -5,      /* next index outside the descriptor or indirect table */
	VQ_ERR_TOO_LONG = -6,  /* more descriptors than the queue size: a loop, or too long */
	VQ_ERR_ADDR = -7,      /* buffer or indirect table not entirely in RAM */
	VQ_ERR_ZERO_LEN = -8,  /* zero-length buffer */
	VQ_ERR_ORDER = -9,     /* device-readable buffer after a device-writable one */
	VQ_ERR_TOTAL_LEN = -10,/* buffers add up to more than 2^32 - 1 bytes */
	VQ_ERR_INDIRECT = -11, /* not negotiated, with NEXT, or a bad table length */
	VQ_ERR_NESTED = -12,   /* INDIRECT inside an indirect table */
	VQ_ERR_CHAIN_CAP = -13,/* more buffers than the caller's vq_chain holds */
	VQ_ERR_PUSH = -14,     /* vq_push: head out of range or nothing in flight */
};

struct vq_config {
	uint16_t size;     /* queue size the driver chose */
	uint64_t desc;     /* guest-physical addresses of the three parts */
	uint64_t avail;
	uint64_t used;
	bool event_idx;    /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;     /* VIRTIO_F_INDIRECT_DESC negotiated */
};

struct vq {
	const struct gmem *mem;
	struct vq_config cfg;
	/* Host views of whole rings, translated once at vq_init. Only indexed
	 * below cfg.size, so no access leaves them. */
	uint8_t *desc, *avail, *used;
	uint16_t last_avail;     /* next available ring entry to pop */
	uint16_t shadow_avail;   /* avail idx as last read and validated */
	uint16_t used_idx;       /* next used ring entry; published to the guest */
	uint16_t signalled_used; /* used_idx at the last vq_should_notify() */
	bool signalled_valid;
	uint32_t inflight;       /* popped, not yet pushed */
	int err;                 /* first error; 0 while healthy */
};

/* One guest buffer of a chain, already translated for its whole length. */
struct vq_buf {
	uint64_t gpa;
	void *hva;
	uint32_t len; /* > 0 */
	bool writable;
};

/* A popped chain: buf[0, nr_readable) are device-readable, buf[nr_readable, nr)
 * device-writable. buf and cap belong to the caller (vq_chain_alloc() or an
 * array); cap bounds the chain a device accepts: the queue size takes any. */
struct vq_chain {
	uint16_t head; /* what vq_push() wants back */
	uint32_t nr, nr_readable;
	uint32_t readable_len, writable_len;
	uint32_t cap;
	struct vq_buf *buf;
};

/* Checks cfg and translates the rings. 0, or VQ_ERR_CONFIG (the queue stays
 * unusable: every pop and push fails). Indices start at 0. */
int vq_init(struct vq *vq, const struct gmem *mem, const struct vq_config *cfg);
/* Back to a fresh, unconfigured queue (device reset). */
void vq_reset(struct vq *vq);
/* Sets the device's indices (tests start a queue anywhere). Nothing in flight. */
void vq_set_indices(struct vq *vq, uint16_t last_avail, uint16_t used_idx);

/* What a snapshot keeps of a queue beyond its configuration: the device's
 * positions, the EVENT_IDX interrupt state and the queue's health. */
struct vq_state {
	uint16_t last_avail;
	uint16_t used_idx;
	uint16_t signalled_used;
	bool signalled_valid;
	uint16_t inflight; /* chains popped and not pushed */
	int err;           /* 0, or the vq_error that broke the queue */
};

void vq_get_state(const struct vq *vq, struct vq_state *s);
/* Onto a queue vq_init() accepted: checks s against it first (inflight at most
 * the queue size, used_idx + inflight == last_avail as pops and pushes keep it,
 * err 0 or a vq_error a healthy queue can turn into) and changes nothing when it
 * does not fit. 0, or -1 with *why set to a static description. */
int vq_set_state(struct vq *vq, const struct vq_state *s, const char **why);
/* Gives the last n chains popped back to the available ring, as if they had
 * never been popped: a device holding chains it has not used (an empty rx
 * buffer, a request waiting for the rate limiter) lets go of them before a
 * snapshot, and pops them again afterwards. The caller must know that no chain
 * popped after them is still in flight. 0, or -1 when fewer than n are in
 * flight. */
int vq_unpop(struct vq *vq, uint16_t n);

/* Pops the next available chain into c: VQ_CHAIN, VQ_EMPTY, or a negative
 * vq_error; on error the queue is broken from then on (vq->err says why) and
 * c->nr is 0. With EVENT_IDX, when the device has caught up it asks (avail_event)
 * to be notified of the next chain before it looks at the avail index again. */
int vq_pop(struct vq *vq, struct vq_chain *c);

/* Returns chain `head` to the driver with written_len bytes written (the device
 * must not claim more than the chain's writable_len): the used element, then a
 * release barrier, then the used index. 0 or VQ_ERR_PUSH. */
int vq_push(struct vq *vq, uint16_t head, uint32_t written_len);

/* After one or more pushes: whether the driver wants an interrupt now (EVENT_IDX:
 * used_event passed since the last call; else the NO_INTERRUPT flag). False when
 * nothing was pushed since the last call. */
bool vq_should_notify(struct vq *vq);

/* Caller-owned buffer arrays for chains. 0 or -1 (ENOMEM). */
int vq_chain_alloc(struct vq_chain *c, uint32_t cap);
void vq_chain_free(struct vq_chain *c);

/* Scatter-gather copies over a popped chain, bounded by its buffers: bytes
 * [off, off+len) of the device-readable data into dst, or of src into the
 * device-writable data. Return the bytes copied: short when the data ends. */
size_t vq_chain_read(const struct vq_chain *c, size_t off, void *dst, size_t len);
size_t vq_chain_write(const struct vq_chain *c, size_t off, const void *src, size_t len);

const char *vq_strerror(int err);

#endif
