/* Virtio devices: what a device (blk, net, vsock, rng, balloon) implements and
 * what the transport (virtio-pci, src/virtio/pci.c) gives it.
 *
 * A device is an ops table plus its own state (priv). The transport owns the
 * device status, feature negotiation, the queues (struct vq, virtqueue.h),
 * MSI-X and the notification path:
 *  - the guest's queue notifications arrive on ioeventfds, interrupts leave
 *    through irqfds, so the hot path never returns to userspace on a vCPU;
 *  - each device has one event thread (epoll). It calls ops->notify when a queue
 *    was kicked, and the device's own callbacks (virtio_dev_watch) for its
 *    backend file descriptors (TAP, sockets, io_uring completions, timers).
 *
 * Locking: everything a device does runs with d->lock held: ops callbacks, watch
 * callbacks, config accesses from vCPUs. A device needs no lock of its own
 * unless it runs threads of its own. Device code must never block for long with
 * the lock held (no synchronous disk I/O): vCPU config accesses wait on it.
 *
 * The guest is hostile: ops->notify gets queues whose chains vq_pop() already
 * checked; request headers inside the buffers are the device's to validate
 * (copy with vq_chain_read, then check). A request that makes no sense fails
 * that request (a status byte), or, when the device cannot go on, the device
 * calls virtio_dev_needs_reset(). Nothing a guest does may stop the VMM. */
#ifndef KITE_VIRTIO_H
#define KITE_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/virtqueue.h"

struct vm;

/* Device types (virtio 1.x, 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* Transport feature bits a device may offer (the transport adds VERSION_1). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_NO_VECTOR 0xffff

#define VIRTIO_BIT(n) (1ULL << (n))

struct virtio_dev;
struct snap_writer;
struct snap_reader;
struct snap_cursor;
struct kite_err;

struct virtio_dev_ops {
	uint16_t device_id;       /* VIRTIO_ID_* */
	uint16_t num_queues;      /* 1..VIRTIO_MAX_QUEUES */
	uint16_t queue_max_size;  /* power of two, offered for every queue */
	uint32_t config_len;      /* bytes of device configuration space */

	/* Device configuration space, bounds already checked by the transport:
	 * off + len <= config_len, len 1, 2, 4 (or 8). Little-endian layout. */
	void (*config_read)(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
	/* Optional: writes to a writable config field (balloon's actual). */
	void (*config_write)(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len);

	/* The driver set DRIVER_OK: queues that the driver enabled are vq_init'ed
	 * (virtio_dev_queue() returns them), features are final. The device starts
	 * its backend (watches fds, ...). 0, or -1 (the transport sets NEEDS_RESET).
	 * Chains the driver made available before this are still in the queues:
	 * the transport calls notify for every queue right after activate. */
	int (*activate)(struct virtio_dev *d);
	/* Queue q was kicked (or may have new chains). Pop until VQ_EMPTY; a
	 * negative vq_pop() result broke the queue: call virtio_dev_needs_reset. */
	void (*notify)(struct virtio_dev *d, unsigned q);
	/* The driver reset the device (status 0) or the device stops. Forget every
	 * chain in flight (do not push them; wait for or cancel backend I/O that
	 * still points into guest memory), stop watching backend fds. The
	 * transport resets the queues afterwards. Called only after activate. */
	void (*reset)(struct virtio_dev *d);
	/* Optional: at VM teardown, after the event thread stopped. Free priv. */
	void (*destroy)(struct virtio_dev *d);
	/* Snapshots (VM paused, lock held): the device's own state beyond the
	 * transport's, appended to the device's open section; restore reads it back
	 * (values checked) onto a freshly created device before activation state is
	 * rebuilt. save NULL: the device cannot be snapshotted (save refuses, naming it). */
	int (*save)(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err);
	int (*restore)(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err);
	/* Optional, before save (lock held, after activate only): finish or give
	 * back what is in flight, so the queues hold no chain the device keeps
	 * outside the snapshot. Backend I/O completes and its used entries are
	 * pushed (guest memory changes, interrupts may be sent); chains the device
	 * holds unused go back with vq_unpop(). The device may carry on afterwards:
	 * the transport notifies every queue when the snapshot is done. */
	void (*quiesce)(struct virtio_dev *d);
};

struct virtio_queue {
	struct vq vq;
	/* Driver-written configuration (common config). */
	uint16_t size;
	uint16_t msix_vector;
	bool enabled;
	uint64_t desc, avail, used;
	/* Transport-private. */
	int kick_fd;
	bool ready; /* vq_init succeeded at DRIVER_OK */
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;          /* the device's state */
	char name[32];       /* "virtio-blk0", for logs and stats */
	struct vm *vm;
	pthread_mutex_t lock;

	uint64_t host_features;  /* offered: the device's plus transport bits */
	uint64_t guest_features; /* accepted by the driver (valid from FEATURES_OK) */
	uint8_t status;
	uint8_t config_generation;
	struct virtio_queue queues[VIRTIO_MAX_QUEUES];

	/* Between virtio_quiesce_all and virtio_resume_all: the lock is held by
	 * the snapshot and the device has nothing in flight. */
	bool quiesced;

	/* Counters (trap accounting): written under lock, read relaxed. */
	uint64_t kicks, interrupts, requests, errors;

	/* Event thread and transport, private to src/virtio/. */
	int epfd, stop_fd;
	pthread_t thread;
	bool thread_started;
	void *transport;
	struct virtio_watch *watches;
};

/* Creates a virtio-pci device on the VM's PCI bus with its event thread. The
 * device features `features` are offered together with VERSION_1, EVENT_IDX and
 * INDIRECT_DESC. name is copied ("virtio-blk0"). On failure err is set and
 * nothing is left behind (destroy is not called). */
struct virtio_dev *virtio_pci_create(struct vm *vm, const struct virtio_dev_ops *ops, void *priv,
				     uint64_t features, const char *name, struct kite_err *err);

/* Whether the driver accepted feature bit n. */
static inline bool virtio_has_feature(const struct virtio_dev *d, unsigned n)
{
	return (d->guest_features >> n) & 1;
}

/* Queue q when the driver enabled it and DRIVER_OK is set, else NULL. */
struct vq *virtio_dev_queue(struct virtio_dev *d, unsigned q);

/* Chains of queue q popped and not pushed (0 when the queue does not run). */
unsigned virtio_dev_inflight(const struct virtio_dev *d, unsigned q);
/* For ops->save / ops->restore of devices that keep nothing in flight across a
 * snapshot: 0 when no running queue (but those in the skip mask) has a chain
 * in flight, or the device needs a reset (quiet until the driver resets it); else -1 with err naming the device and queue (code: save, an
 * internal error; restore, KITE_EXIT_IMAGE). */
int virtio_dev_check_idle(const struct virtio_dev *d, uint32_t skip, int code, struct kite_err *err);

/* After pushing used chains on queue q: interrupts the guest if it wants one
 * (vq_should_notify), through the queue's MSI-X vector. Lock held. */
void virtio_dev_signal(struct virtio_dev *d, unsigned q);
/* Configuration changed (bumps the generation, config interrupt). Lock held. */
void virtio_dev_config_changed(struct virtio_dev *d);
/* The device cannot go on: sets NEEDS_RESET, tells the driver, logs why once.
 * The device stays quiet until the driver resets it. Lock held. */
void virtio_dev_needs_reset(struct virtio_dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Calls cb(d, ctx, epoll events) on the event thread, with d->lock held,
 * whenever fd is ready for `events` (EPOLLIN / EPOLLOUT, level-triggered).
 * Watching an fd again changes its events (0 pauses it); unwatch forgets it.
 * 0 or -1. Callable with or without the lock. */
typedef void (*virtio_watch_fn)(struct virtio_dev *d, void *ctx, uint32_t events);
int virtio_dev_watch(struct virtio_dev *d, int fd, uint32_t events, virtio_watch_fn cb, void *ctx);
void virtio_dev_unwatch(struct virtio_dev *d, int fd);

/* Snapshots of every virtio device of the VM, in vm->virtio[] order.
 *
 * virtio_quiesce_all (VM paused, before the vCPUs' and guest memory's state is
 * taken): takes every device's lock, so no event thread touches a queue or
 * guest memory until virtio_resume_all, and settles each active device
 * (ops->quiesce): disk I/O in flight completes and is answered, chains held
 * unused are given back. This may write guest memory and send interrupts:
 * call it before saving vCPU/irqchip state and memory.
 *
 * virtio_save_all: one section "VIRT" per device, instance = index in
 * vm->virtio[]: identity, PCI configuration, MSI-X, status, features, queues
 * and their positions, then the device's own bytes (ops->save). Refuses before
 * writing anything when a device has no ops->save or was not quiesced.
 *
 * virtio_resume_all: notifies every live queue (chains given back at quiesce
 * are served again) and releases the locks.
 *
 * virtio_restore_all (fresh devices from the same configuration, before any
 * vCPU runs, guest memory already in place or at least mapped): checks every
 * device's section against the device and reads it, all devices first; only
 * then rebuilds what activation builds: MSI routes, ioeventfds at the BAR's
 * address, ops->activate, the INTx line, and one notify per live queue.
 * A failure leaves the devices half-restored but with no backend started:
 * the VM must not run. Errors are KITE_EXIT_IMAGE and name the device. */
void virtio_quiesce_all(struct vm *vm);
int virtio_save_all(struct vm *vm, struct snap_writer *w, struct kite_err *err);
void virtio_resume_all(struct vm *vm);
/* After the VM moved elsewhere (migration done): lets go of quiesced devices
 * without serving their queues again, so this copy touches no backend. */
void virtio_abandon_all(struct vm *vm);
int virtio_restore_all(struct vm *vm, const struct snap_reader *r, struct kite_err *err);
/* Frees every virtio device of the VM (the transport's teardown hook, after
 * the vCPUs stopped; for tests that build a VM without the device registry). */
void virtio_destroy_all(struct vm *vm);

/* All devices of the VM, for stats and the API (NULL-terminated walk). */
struct virtio_dev *virtio_dev_next(struct vm *vm, struct virtio_dev *prev);
/* Finds a device by name ("virtio-blk0"), or NULL. */
struct virtio_dev *virtio_dev_find(struct vm *vm, const char *name);

#endif
