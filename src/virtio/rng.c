/* virtio-rng (virtio 5.4): one queue of device-writable buffers, filled from
 * getrandom(). A chain with no writable byte is returned empty. Each request
 * is capped at RNG_MAX_REQ bytes so one guest cannot keep the thread busy.
 * With a rate limiter (PUT /entropy rate_limiter), a request over budget is
 * held and retried when a timerfd says the buckets have refilled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapfile.h"
#include "virtio/virtio.h"

#define RNG_QUEUE_SIZE 256
#define RNG_MAX_REQ 65536

struct rng {
	struct vq_chain chain;
	bool held;      /* chain popped, waiting for the rate limiter */
	uint64_t bytes; /* given to the guest */
	struct rate_limiter rl;
	bool limited;
	int timer_fd;
};

static void rng_notify(struct virtio_dev *d, unsigned q);

static void on_timer(struct virtio_dev *d, void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	struct rng *r = d->priv;
	uint64_t n;
	if (read(r->timer_fd, &n, sizeof(n)) < 0)
		return;
	rng_notify(d, 0);
}

/* Whether the request may go now; else arms the timer for when it may. */
static bool rng_budget(struct virtio_dev *d, struct rng *r, uint32_t len)
{
	if (!r->limited)
		return true;
	uint64_t now = stats_now_ns();
	if (rl_consume(&r->rl, len, now))
		return true;
	uint64_t wait = rl_wait_ns(&r->rl, len, now);
	struct itimerspec it = {.it_value = {.tv_sec = (time_t)(wait / 1000000000u),
					     .tv_nsec = (long)(wait % 1000000000u)}};
	if (timerfd_settime(r->timer_fd, 0, &it, NULL) < 0)
		virtio_dev_needs_reset(d, "rate limiter timer: %s", strerror(errno));
	return false;
}

/* Fills up to len bytes of the chain's writable buffers; returns how many. */
static uint32_t rng_fill(const struct vq_chain *c, uint32_t len)
{
	uint32_t done = 0;
	for (uint32_t i = c->nr_readable; i < c->nr && done < len; i++) {
		uint32_t n = c->buf[i].len < len - done ? c->buf[i].len : len - done;
		uint8_t *p = c->buf[i].hva;
		uint32_t got = 0;
		while (got < n) {
			ssize_t r = getrandom(p + got, n - got, 0);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return done + got;
			}
			got += (uint32_t)r;
		}
		done += n;
	}
	return done;
}

static void rng_notify(struct virtio_dev *d, unsigned q)
{
	struct rng *r = d->priv;
	struct vq *vq = virtio_dev_queue(d, q);
	if (!vq)
		return;
	for (;;) {
		if (!r->held) {
			int p = vq_pop(vq, &r->chain);
			if (p == VQ_EMPTY)
				break;
			if (p < 0) {
				virtio_dev_needs_reset(d, "request queue: %s", vq_strerror(p));
				return;
			}
		}
		uint32_t want = r->chain.writable_len < RNG_MAX_REQ ? r->chain.writable_len : RNG_MAX_REQ;
		r->held = !rng_budget(d, r, want);
		if (r->held)
			break; /* the timer brings us back */
		uint32_t n = rng_fill(&r->chain, want);
		r->bytes += n;
		d->requests++;
		vq_push(vq, r->chain.head, n);
	}
	virtio_dev_signal(d, q);
}

static void rng_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)d;
	(void)off;
	memset(data, 0, len);
}

static int rng_activate(struct virtio_dev *d)
{
	struct rng *r = d->priv;
	r->held = false;
	if (r->limited && virtio_dev_watch(d, r->timer_fd, EPOLLIN, on_timer, NULL) < 0)
		return -1;
	return 0;
}

static void rng_reset(struct virtio_dev *d)
{
	struct rng *r = d->priv;
	r->held = false; /* a held chain is forgotten, never pushed */
	if (r->limited) {
		struct itimerspec off = {0};
		timerfd_settime(r->timer_fd, 0, &off, NULL);
		virtio_dev_unwatch(d, r->timer_fd);
	}
}

static void rng_destroy(struct virtio_dev *d)
{
	struct rng *r = d->priv;
	if (r->timer_fd >= 0)
		close(r->timer_fd);
	vq_chain_free(&r->chain);
	free(r);
}

/* Snapshots: nothing of its own. A request waiting for the rate limiter goes
 * back to the queue (its budget is not part of the snapshot either). */
static void rng_quiesce(struct virtio_dev *d)
{
	struct rng *r = d->priv;
	struct vq *vq = virtio_dev_queue(d, 0);
	if (r->held && vq && vq_unpop(vq, 1) == 0)
		r->held = false;
}

static int rng_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	(void)w;
	return virtio_dev_check_idle(d, 0, KITE_EXIT_ERROR, err);
}

static int rng_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	(void)c;
	return virtio_dev_check_idle(d, 0, KITE_EXIT_IMAGE, err);
}

static const struct virtio_dev_ops rng_ops = {
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = RNG_QUEUE_SIZE,
	.config_len = 0,
	.config_read = rng_config_read,
	.activate = rng_activate,
	.notify = rng_notify,
	.reset = rng_reset,
	.destroy = rng_destroy,
	.save = rng_save,
	.restore = rng_restore,
	.quiesce = rng_quiesce,
};

static int rng_create(struct vm *vm, struct kite_err *err)
{
	if (!vm->cfg->rng)
		return 0;
	struct rng *r = calloc(1, sizeof(*r));
	if (!r || vq_chain_alloc(&r->chain, RNG_QUEUE_SIZE) < 0) {
		free(r);
		return err_set(err, KITE_EXIT_ERROR, "virtio-rng: out of memory");
	}
	r->timer_fd = -1;
	r->limited = rl_config_active(&vm->cfg->rng_rl);
	if (r->limited) {
		rl_init(&r->rl, &vm->cfg->rng_rl, stats_now_ns());
		r->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	}
	if (r->limited && r->timer_fd < 0) {
		err_set(err, KITE_EXIT_ERROR, "virtio-rng: timerfd: %s", strerror(errno));
		goto fail;
	}
	if (!virtio_pci_create(vm, &rng_ops, r, 0, "virtio-rng0", err))
		goto fail;
	return 0;
fail:
	if (r->timer_fd >= 0)
		close(r->timer_fd);
	vq_chain_free(&r->chain);
	free(r);
	return -1;
}

KITE_DEVICE(virtio_rng, {.name = "virtio-rng", .create = rng_create});
