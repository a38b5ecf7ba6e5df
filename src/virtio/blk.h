/* virtio-blk (virtio 1.x, 5.2): a raw image behind one request queue, with
 * asynchronous I/O through io_uring.
 *
 * Declared here for the unit tests and the fuzz target: the request checks
 * (blk_parse, blk_data_iov) are pure functions of a popped chain, and the
 * device itself can be driven through blk_ops without the PCI transport. */
#ifndef KITE_VIRTIO_BLK_H
#define KITE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/log.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

struct disk_config;

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define BLK_SECTOR 512u
#define BLK_HDR_LEN 16u /* le32 type, le32 reserved, le64 sector */
#define BLK_ID_BYTES 20u
#define BLK_QUEUE_SIZE 256u
/* Data segments per request the driver may use (seg_max): the queue size
 * less the header and the status buffers. */
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)

/* Configuration space (struct virtio_blk_config up to write-zeroes). */
#define BLK_CFG_CAPACITY 0
#define BLK_CFG_SEG_MAX 12
#define BLK_CFG_BLK_SIZE 20
#define BLK_CFG_NUM_QUEUES 34
#define BLK_CFG_LEN 60

/* What a request is checked against. */
struct blk_limits {
	uint64_t capacity; /* 512-byte sectors */
	bool read_only;
};

/* A checked request. Layout of a chain (any split into buffers):
 *   readable:  header (16 bytes) [+ data for OUT]
 *   writable:  [data for IN, the id for GET_ID] + status (its last byte) */
struct blk_req {
	uint32_t type;        /* from the header */
	uint64_t sector;      /* from the header (IN, OUT) */
	uint64_t offset;      /* sector * 512: byte offset in the image */
	uint32_t data_len;    /* bytes to move: OUT readable after the header,
			       * IN writable before the status, GET_ID <= 20 */
	uint8_t status;       /* VIRTIO_BLK_S_OK: carry it out; else answer this */
	uint8_t *status_ptr;  /* host address of the chain's last writable byte */
};

/* Copies the header out of the chain once and checks the request against the
 * chain's shape and lim. Returns -1 when the chain has no writable byte for a
 * status (the device cannot answer: NEEDS_RESET), else 0 with r->status the
 * answer to give at once (IOERR: malformed, misaligned, out of range, write to
 * a read-only disk; UNSUPP: unknown type) or OK. */
int blk_parse(const struct vq_chain *c, const struct blk_limits *lim, struct blk_req *r);

/* The data of a checked IN or OUT request as iovecs pointing at the guest's
 * buffers (header and status byte left out). Returns the count (<= c->nr,
 * 0 for no data); their lengths add up to r->data_len. */
unsigned blk_data_iov(const struct vq_chain *c, const struct blk_req *r, struct iovec *iov,
		      unsigned max);

/* The device: one per --disk. blk_open checks and opens the image and sets up
 * io_uring; errors name the drive and path (KITE_EXIT_IMAGE for the image). */
struct blk;
struct blk *blk_open(const struct disk_config *cfg, struct kite_err *err);
/* Features to offer for it (SEG_MAX, BLK_SIZE, FLUSH, RO when read-only). */
uint64_t blk_features(const struct blk *b);
uint64_t blk_capacity(const struct blk *b);
/* Frees a device that has no transport (create failed) or whose transport is
 * gone: waits for I/O in flight first. */
void blk_free(struct blk *b);
/* Ties b to its transport device (priv of d is b). */
void blk_attach(struct blk *b, struct virtio_dev *d);

/* Handles the completions there are (answers their chains, signals) and
 * pops again if the device had stopped for want of room: what the event
 * thread does when the completion eventfd fires; for tests that play the
 * event thread. d->lock held. Returns the requests still in flight. */
unsigned blk_poll(struct virtio_dev *d);

extern const struct virtio_dev_ops blk_ops;

/* PATCH /drives/{id}: a new backing file (NULL: keep it) and/or new limits
 * (NULL: keep them) for a running disk. In-flight requests finish on the old
 * file first; the guest is told the new capacity. 0, or -1 with err set. */
struct vm;
struct rl_config;
struct blk;
/* New limits for a disk (lock held); a request held by the old ones is
 * retried at once. */
void blk_set_rate_limiter(struct blk *b, const struct rl_config *rl);
int blk_update(struct vm *vm, const char *id, const char *path, const struct rl_config *rl,
	       struct kite_err *err);

#endif
