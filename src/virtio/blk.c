/* virtio-blk: raw images, one request queue, I/O through io_uring.
 *
 * The event thread pops chains, checks each request (blk_parse) and hands
 * reads, writes and flushes to io_uring with iovecs that point straight at the
 * guest's buffers. io_uring posts completions to an eventfd the event thread
 * watches; only then is the status byte written and the chain pushed. So a
 * vCPU never waits for the disk, and a flush (fdatasync) is answered only once
 * the data the guest wrote before it is on stable storage.
 *
 * Ordering: the block layer asks a flush to cover the writes the guest saw
 * completed before it sent the flush. Such a write's data is in the page cache
 * before its completion reaches the guest, so an fdatasync started later
 * covers it; writes still in flight need not be covered (nor are they).
 *
 * A driver that does not accept FLUSH cannot ask for one (the virtio spec:
 * the device should then write through): its writes carry RWF_DSYNC.
 *
 * Requests in flight hold host pointers into guest memory: reset waits for
 * them before it returns. */
#include "virtio/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapfile.h"
#include "stats/stats.h"
#include "vmm/vm.h"

/* One request handed to io_uring. */
struct blk_io {
	struct blk_io *next_free;
	uint16_t head;
	uint32_t type;
	uint8_t *status;   /* the chain's status byte */
	uint32_t in_len;   /* data bytes the guest gets (reads) */
	uint64_t offset;   /* where the rest of the transfer goes */
	uint32_t left;     /* bytes not transferred yet */
	unsigned first, niov;
	struct iovec *iov; /* BLK_QUEUE_SIZE entries */
};

struct blk {
	struct virtio_dev *dev;
	char *id, *path;
	int fd;
	struct blk_limits lim;
	uint8_t config[BLK_CFG_LEN];
	char serial[BLK_ID_BYTES]; /* NUL-padded */

	struct io_uring ring;
	bool ring_ok;
	int efd; /* io_uring posts completions here */
	bool watching;
	bool write_through; /* the driver did not accept FLUSH */

	struct vq_chain chain;
	struct blk_io io[BLK_QUEUE_SIZE];
	struct iovec *iovs;
	struct blk_io *free;
	unsigned inflight;
	bool stalled;      /* stopped popping for want of a slot or an SQE */
	bool logged_error; /* the first I/O error is logged, not every one */

	/* rate_limiter: a request over budget stays in `chain` (held) until
	 * the timer says the buckets have refilled. */
	struct rate_limiter rl;
	bool limited;
	bool held;
	struct blk_req held_req;
	int timer_fd;
};

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int image_err(struct kite_err *err, const struct disk_config *cfg, const char *why)
{
	return err_set(err, KITE_EXIT_IMAGE, "disk '%s' ('%s'): %s", cfg->id ? cfg->id : "?",
		       cfg->path ? cfg->path : "", why);
}

/* Opens the image: regular file or block device, O_RDONLY for read-only. */
static int image_open(struct blk *b, const struct disk_config *cfg, struct kite_err *err)
{
	int flags = (cfg->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	/* O_NONBLOCK so a FIFO does not hang the open; cleared below, because
	 * io_uring would answer EAGAIN on a non-blocking file. */
	b->fd = open(cfg->path, flags | O_NONBLOCK);
	if (b->fd < 0)
		return image_err(err, cfg, strerror(errno));
	struct stat st;
	if (fstat(b->fd, &st) < 0)
		return image_err(err, cfg, strerror(errno));
	uint64_t size;
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &size) < 0)
			return image_err(err, cfg, strerror(errno));
	} else if (S_ISDIR(st.st_mode)) {
		return image_err(err, cfg, strerror(EISDIR));
	} else {
		return image_err(err, cfg, "not a regular file or block device");
	}
	if (fcntl(b->fd, F_SETFL, 0) < 0)
		return image_err(err, cfg, strerror(errno));
	/* Bytes past the last whole sector are unreachable. */
	b->lim.capacity = size / BLK_SECTOR;
	b->lim.read_only = cfg->read_only;
	return 0;
}

static int ring_setup(struct blk *b, struct kite_err *err)
{
	int r = io_uring_queue_init(BLK_QUEUE_SIZE, &b->ring, 0);
	if (r < 0)
		return err_set(err, KITE_EXIT_ERROR, "disk '%s': io_uring: %s", b->id,
			       strerror(-r));
	b->ring_ok = true;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0)
		return err_set(err, KITE_EXIT_ERROR, "disk '%s': eventfd: %s", b->id,
			       strerror(errno));
	r = io_uring_register_eventfd(&b->ring, b->efd);
	if (r < 0)
		return err_set(err, KITE_EXIT_ERROR, "disk '%s': io_uring eventfd: %s", b->id,
			       strerror(-r));
	return 0;
}

struct blk *blk_open(const struct disk_config *cfg, struct kite_err *err)
{
	struct blk *b = calloc(1, sizeof(*b));
	if (!b) {
		err_set(err, KITE_EXIT_ERROR, "disk '%s': out of memory", cfg->id);
		return NULL;
	}
	b->fd = b->efd = b->timer_fd = -1;
	b->id = strdup(cfg->id ? cfg->id : "");
	b->path = strdup(cfg->path ? cfg->path : "");
	/* Nothing past BLK_QUEUE_SIZE iovecs per request is ever touched, and
	 * only the pages long chains use become real. */
	b->iovs = calloc((size_t)BLK_QUEUE_SIZE * BLK_QUEUE_SIZE, sizeof(*b->iovs));
	if (!b->id || !b->path || !b->iovs || vq_chain_alloc(&b->chain, BLK_QUEUE_SIZE) < 0) {
		err_set(err, KITE_EXIT_ERROR, "disk '%s': out of memory", cfg->id);
		goto fail;
	}
	if (!cfg->path || image_open(b, cfg, err) < 0 || ring_setup(b, err) < 0)
		goto fail;
	b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (b->timer_fd < 0) {
		err_set(err, KITE_EXIT_ERROR, "disk '%s': timerfd: %s", b->id, strerror(errno));
		goto fail;
	}
	b->limited = rl_config_active(&cfg->rl);
	rl_init(&b->rl, &cfg->rl, stats_now_ns());

	for (unsigned i = 0; i < BLK_QUEUE_SIZE; i++) {
		b->io[i].iov = b->iovs + (size_t)i * BLK_QUEUE_SIZE;
		b->io[i].next_free = b->free;
		b->free = &b->io[i];
	}
	const char *serial = cfg->serial ? cfg->serial : b->id;
	/* NUL-padded; a 20-byte serial has no terminator. */
	memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
	put_le(b->config + BLK_CFG_CAPACITY, b->lim.capacity, 8);
	put_le(b->config + BLK_CFG_SEG_MAX, BLK_SEG_MAX, 4);
	put_le(b->config + BLK_CFG_BLK_SIZE, BLK_SECTOR, 4);
	put_le(b->config + BLK_CFG_NUM_QUEUES, 1, 2);
	return b;
fail:
	if (!err->code)
		image_err(err, cfg, "no image path");
	blk_free(b);
	return NULL;
}

uint64_t blk_features(const struct blk *b)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	if (b->lim.read_only)
		f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	return f;
}

uint64_t blk_capacity(const struct blk *b)
{
	return b->lim.capacity;
}

void blk_attach(struct blk *b, struct virtio_dev *d)
{
	b->dev = d;
}

static void io_put(struct blk *b, struct blk_io *io)
{
	io->next_free = b->free;
	b->free = io;
	b->inflight--;
}

/* Answers a chain: status byte, used element; the caller signals. */
static void answer(struct blk *b, struct vq *vq, uint16_t head, uint8_t *status, uint8_t st,
		   uint32_t data_len)
{
	*status = st;
	if (st != VIRTIO_BLK_S_OK) {
		b->dev->errors++;
		data_len = 0;
	}
	vq_push(vq, head, data_len + 1);
}

static void io_prep(struct blk *b, struct blk_io *io, struct io_uring_sqe *sqe)
{
	switch (io->type) {
	case VIRTIO_BLK_T_IN:
		io_uring_prep_readv(sqe, b->fd, io->iov + io->first, io->niov - io->first,
				    io->offset);
		break;
	case VIRTIO_BLK_T_OUT:
		io_uring_prep_writev2(sqe, b->fd, io->iov + io->first, io->niov - io->first,
				      io->offset, b->write_through ? RWF_DSYNC : 0);
		break;
	default:
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
}

static void submit(struct blk *b)
{
	int r;
	do
		r = io_uring_submit(&b->ring);
	while (r == -EINTR);
	/* Sized so that neither SQ nor CQ can overflow: an error here means the
	 * host refuses io_uring work; the SQEs stay queued for a later submit. */
	if (r < 0)
		virtio_dev_needs_reset(b->dev, "disk '%s': io_uring submit: %s", b->id, strerror(-r));
}

/* Drops the bytes already moved from the front of the iovecs. */
static void io_advance(struct blk_io *io, uint32_t done)
{
	io->offset += done;
	io->left -= done;
	while (done) {
		struct iovec *v = &io->iov[io->first];
		if (done < v->iov_len) {
			v->iov_base = (uint8_t *)v->iov_base + done;
			v->iov_len -= done;
			break;
		}
		done -= (uint32_t)v->iov_len;
		io->first++;
	}
}

/* One completion. Returns true when the chain was answered. */
static bool complete(struct blk *b, struct vq *vq, struct blk_io *io, int res, bool drop)
{
	if (drop || !vq) {
		io_put(b, io);
		return false;
	}
	if (io->type != VIRTIO_BLK_T_FLUSH && res >= 0 && (uint32_t)res < io->left) {
		/* A short transfer: more than one call moves (> 2 GiB), or the
		 * image shrank under us (0: its end). */
		if (res == 0) {
			res = -ENODATA;
		} else {
			io_advance(io, (uint32_t)res);
			struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
			if (sqe) { /* always: at most BLK_QUEUE_SIZE SQEs are pending */
				io_prep(b, io, sqe);
				submit(b);
				return false;
			}
			res = -EAGAIN;
		}
	}
	if (res < 0 && !b->logged_error) {
		b->logged_error = true;
		log_warn("disk '%s': %s at byte %llu: %s (later errors not logged)", b->id,
			 io->type == VIRTIO_BLK_T_FLUSH ? "flush" :
			 io->type == VIRTIO_BLK_T_IN ? "read" : "write",
			 (unsigned long long)io->offset, strerror(-res));
	}
	answer(b, vq, io->head, io->status, res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK,
	       io->in_len);
	io_put(b, io);
	return true;
}

/* Reaps the completions there are. With drop (reset, teardown) nothing is
 * written to the guest and nothing resubmitted. */
static bool reap(struct blk *b, struct vq *vq, bool drop)
{
	struct io_uring_cqe *cqe;
	bool answered = false;
	while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
		struct blk_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&b->ring, cqe);
		if (io)
			answered |= complete(b, vq, io, res, drop);
	}
	return answered;
}

/* Waits for every request in flight (they point into guest memory) and
 * forgets them. */
static void drain(struct blk *b)
{
	while (b->inflight) {
		struct io_uring_cqe *cqe;
		/* Submits whatever an earlier failed submit left in the SQ. */
		int r = io_uring_submit_and_wait(&b->ring, 1);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			log_error("disk '%s': waiting for I/O in flight: %s", b->id, strerror(-r));
			return;
		}
		if (io_uring_peek_cqe(&b->ring, &cqe) == 0)
			reap(b, NULL, true);
	}
	eventfd_t v;
	(void)eventfd_read(b->efd, &v);
}

/* Starts one checked request. Returns true when it was answered at once. */
static bool start(struct blk *b, struct vq *vq, const struct blk_req *r)
{
	struct vq_chain *c = &b->chain;
	if (r->type == VIRTIO_BLK_T_GET_ID) {
		vq_chain_write(c, 0, b->serial, r->data_len);
		answer(b, vq, c->head, r->status_ptr, VIRTIO_BLK_S_OK, r->data_len);
		return true;
	}
	if (r->type != VIRTIO_BLK_T_FLUSH && r->data_len == 0) {
		answer(b, vq, c->head, r->status_ptr, VIRTIO_BLK_S_OK, 0);
		return true;
	}
	struct blk_io *io = b->free;
	b->free = io->next_free;
	b->inflight++;
	io->head = c->head;
	io->type = r->type;
	io->status = r->status_ptr;
	io->in_len = r->type == VIRTIO_BLK_T_IN ? r->data_len : 0;
	io->offset = r->offset;
	io->left = r->data_len;
	io->first = 0;
	io->niov = blk_data_iov(c, r, io->iov, BLK_QUEUE_SIZE);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe) { /* kick() checked for room: not reached */
		io_put(b, io);
		answer(b, vq, c->head, r->status_ptr, VIRTIO_BLK_S_IOERR, 0);
		return true;
	}
	io_prep(b, io, sqe);
	return false;
}

/* Whether request r may start under the rate limiter (reads and writes
 * count their bytes, every request one operation); else arms the timer. */
static bool rl_allows(struct blk *b, const struct blk_req *r)
{
	if (!b->limited || r->type == VIRTIO_BLK_T_GET_ID)
		return true;
	uint64_t bytes = r->type == VIRTIO_BLK_T_FLUSH ? 0 : r->data_len;
	uint64_t now = stats_now_ns();
	if (rl_consume(&b->rl, bytes, now))
		return true;
	uint64_t wait = rl_wait_ns(&b->rl, bytes, now);
	struct itimerspec it = {.it_value = {.tv_sec = (time_t)(wait / 1000000000u),
					     .tv_nsec = (long)(wait % 1000000000u)}};
	if (timerfd_settime(b->timer_fd, 0, &it, NULL) < 0)
		log_warn("disk '%s': rate limiter timer: %s", b->id, strerror(errno));
	return false;
}

/* Pops and starts requests while there is room for them in flight. */
static void kick(struct blk *b)
{
	struct virtio_dev *d = b->dev;
	struct vq *vq = virtio_dev_queue(d, 0);
	if (!vq || (d->status & VIRTIO_STATUS_NEEDS_RESET))
		return;
	bool answered = false, queued = false;
	b->stalled = false;
	for (;;) {
		if (!b->free || io_uring_sq_space_left(&b->ring) == 0) {
			b->stalled = true; /* the next completion pops again */
			break;
		}
		struct blk_req req;
		if (b->held) {
			req = b->held_req; /* its chain is still in b->chain */
		} else {
			int r = vq_pop(vq, &b->chain);
			if (r == VQ_EMPTY)
				break;
			if (r < 0) {
				virtio_dev_needs_reset(d, "%s", vq_strerror(r));
				break;
			}
			d->requests++;
			if (blk_parse(&b->chain, &b->lim, &req) < 0) {
				virtio_dev_needs_reset(d, "request without a status byte");
				break;
			}
		}
		if (req.status == VIRTIO_BLK_S_OK && !rl_allows(b, &req)) {
			b->held = true;
			b->held_req = req;
			break; /* the timer kicks again */
		}
		b->held = false;
		if (req.status != VIRTIO_BLK_S_OK) {
			answer(b, vq, b->chain.head, req.status_ptr, req.status, 0);
			answered = true;
		} else if (start(b, vq, &req)) {
			answered = true;
		} else {
			queued = true;
		}
	}
	if (queued)
		submit(b);
	if (answered)
		virtio_dev_signal(d, 0);
}

unsigned blk_poll(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	eventfd_t v;
	/* Read before reaping: a completion posted after the reap fires again. */
	(void)eventfd_read(b->efd, &v);
	struct vq *vq = virtio_dev_queue(d, 0);
	if (reap(b, vq, false))
		virtio_dev_signal(d, 0);
	if (b->stalled)
		kick(b);
	return b->inflight;
}

static void on_completion(struct virtio_dev *d, void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	blk_poll(d);
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct blk *b = d->priv;
	memcpy(data, b->config + off, len);
}

static void on_timer(struct virtio_dev *d, void *ctx, uint32_t events)
{
	(void)events;
	struct blk *b = ctx;
	uint64_t n;
	if (read(b->timer_fd, &n, sizeof(n)) < 0)
		return;
	kick(b);
	(void)d;
}

static int blk_activate(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	b->write_through = !virtio_has_feature(d, VIRTIO_BLK_F_FLUSH);
	b->held = false;
	if (virtio_dev_watch(d, b->efd, EPOLLIN, on_completion, b) < 0)
		return -1;
	b->watching = true;
	if (b->timer_fd >= 0 && virtio_dev_watch(d, b->timer_fd, EPOLLIN, on_timer, b) < 0)
		return -1;
	return 0;
}

static void blk_notify(struct virtio_dev *d, unsigned q)
{
	if (q == 0)
		kick(d->priv);
}

static void blk_reset(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	if (b->watching)
		virtio_dev_unwatch(d, b->efd);
	b->watching = false;
	if (b->timer_fd >= 0) {
		struct itimerspec off = {0};
		timerfd_settime(b->timer_fd, 0, &off, NULL);
		virtio_dev_unwatch(d, b->timer_fd);
	}
	b->held = false; /* forgotten, never answered */
	drain(b);
	b->stalled = false;
}

void blk_free(struct blk *b)
{
	if (!b)
		return;
	if (b->ring_ok) {
		drain(b);
		io_uring_queue_exit(&b->ring);
	}
	if (b->efd >= 0)
		close(b->efd);
	if (b->fd >= 0)
		close(b->fd);
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	vq_chain_free(&b->chain);
	free(b->iovs);
	free(b->id);
	free(b->path);
	free(b);
}

static void blk_destroy(struct virtio_dev *d)
{
	blk_free(d->priv);
	d->priv = NULL;
}

/* ---- snapshots ----
 * Nothing is in flight in a snapshot: quiesce waits for every io_uring request
 * and answers it (status byte, used entry, interrupt), as a PATCH of the
 * backing file does, and gives a request held by the rate limiter back to the
 * queue (the limiter's budget is not saved). The device's own bytes: u64
 * capacity in sectors, which the guest has read and the restored image must
 * match. */
static void settle(struct blk *b);

static void blk_quiesce(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	settle(b);
	struct vq *vq = virtio_dev_queue(d, 0);
	/* The held chain is the last one popped: everything popped before it
	 * was started, and settle answered it. */
	if (b->held && vq && vq_unpop(vq, 1) == 0)
		b->held = false;
}

static int blk_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	struct blk *b = d->priv;
	if (b->inflight || b->held)
		return err_set(err, KITE_EXIT_ERROR, "%s: %u disk requests still in flight%s", d->name,
			       b->inflight, b->held ? " and one held by the rate limiter" : "");
	if (virtio_dev_check_idle(d, 0, KITE_EXIT_ERROR, err) < 0)
		return -1;
	snapw_u64(w, b->lim.capacity);
	return 0;
}

static int blk_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	struct blk *b = d->priv;
	uint64_t capacity = snapc_u64(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: disk state is short", d->name);
	if (capacity != b->lim.capacity)
		return err_set(err, KITE_EXIT_IMAGE,
			       "%s: the guest saw disk '%s' with %llu sectors, '%s' has %llu", d->name, b->id,
			       (unsigned long long)capacity, b->path, (unsigned long long)b->lim.capacity);
	return virtio_dev_check_idle(d, 0, KITE_EXIT_IMAGE, err);
}

const struct virtio_dev_ops blk_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max_size = BLK_QUEUE_SIZE,
	.config_len = BLK_CFG_LEN,
	.config_read = blk_config_read,
	.activate = blk_activate,
	.notify = blk_notify,
	.reset = blk_reset,
	.destroy = blk_destroy,
	.save = blk_save,
	.restore = blk_restore,
	.quiesce = blk_quiesce,
};

/* One device per --disk, in order: the first is the first virtio-pci
 * function, /dev/vda. */
static int blk_create(struct vm *vm, struct kite_err *err)
{
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		const struct disk_config *cfg = &vm->cfg->disks[i];
		struct blk *b = blk_open(cfg, err);
		if (!b)
			return -1;
		char name[32];
		snprintf(name, sizeof(name), "virtio-blk%u", i);
		struct virtio_dev *d = virtio_pci_create(vm, &blk_ops, b, blk_features(b), name, err);
		if (!d) {
			blk_free(b);
			return -1;
		}
		blk_attach(b, d);
		log_info("%s: disk '%s' ('%s'), %llu sectors%s", name, b->id, b->path,
			 (unsigned long long)b->lim.capacity, b->lim.read_only ? ", read-only" : "");
	}
	return 0;
}

KITE_DEVICE(virtio_blk, {.name = "virtio-blk", .create = blk_create});

void blk_set_rate_limiter(struct blk *b, const struct rl_config *rl)
{
	rl_update(&b->rl, rl, stats_now_ns());
	b->limited = rl_config_active(rl);
	/* A held request is tried again under the new limits, now. */
	if (b->held && b->timer_fd >= 0) {
		struct itimerspec soon = {.it_value = {.tv_nsec = 1}};
		timerfd_settime(b->timer_fd, 0, &soon, NULL);
	}
}

/* Waits for the requests in flight and answers them as usual (PATCH: the
 * backing file changes under a running guest). Lock held. */
static void settle(struct blk *b)
{
	struct vq *vq = virtio_dev_queue(b->dev, 0);
	bool answered = false;
	while (b->inflight) {
		int r = io_uring_submit_and_wait(&b->ring, 1);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			break;
		answered |= reap(b, vq, false);
	}
	if (answered)
		virtio_dev_signal(b->dev, 0);
}

int blk_update(struct vm *vm, const char *id, const char *path, const struct rl_config *rl,
	       struct kite_err *err)
{
	for (struct virtio_dev *d = virtio_dev_next(vm, NULL); d; d = virtio_dev_next(vm, d)) {
		if (d->ops != &blk_ops)
			continue;
		pthread_mutex_lock(&d->lock);
		struct blk *b = d->priv;
		if (!b || strcmp(b->id, id) != 0) {
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		int ret = 0;
		if (path) {
			/* Open the new image first: a bad path changes nothing. */
			struct blk nb = {.fd = -1};
			struct disk_config dc = {.id = b->id, .path = path, .read_only = b->lim.read_only};
			char *p2 = strdup(path);
			if (!p2 || image_open(&nb, &dc, err) < 0) {
				if (nb.fd >= 0)
					close(nb.fd);
				free(p2);
				if (!p2)
					err_set(err, KITE_EXIT_ERROR, "disk '%s': out of memory", id);
				pthread_mutex_unlock(&d->lock);
				return -1;
			}
			settle(b);
			close(b->fd);
			b->fd = nb.fd;
			free(b->path);
			b->path = p2;
			b->lim.capacity = nb.lim.capacity;
			put_le(b->config + BLK_CFG_CAPACITY, b->lim.capacity, 8);
			virtio_dev_config_changed(d); /* the guest rereads the capacity */
			log_info("%s: disk '%s' now '%s', %llu sectors", d->name, id, path,
				 (unsigned long long)b->lim.capacity);
		}
		if (rl)
			blk_set_rate_limiter(b, rl);
		pthread_mutex_unlock(&d->lock);
		return ret;
	}
	return err_set(err, KITE_EXIT_ERROR, "disk '%s' does not exist", id);
}
