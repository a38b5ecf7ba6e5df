/* virtio-rng (virtio 5.4): one queue of device-writable buffers, filled from
 * getrandom(). A chain with no writable byte is returned empty. Each request
 * is capped at RNG_MAX_REQ bytes so one guest cannot keep the thread busy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "devices/device.h"
#include "virtio/virtio.h"

#define RNG_QUEUE_SIZE 256
#define RNG_MAX_REQ 65536

struct rng {
	struct vq_chain chain;
	uint64_t bytes; /* given to the guest */
};

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
		int p = vq_pop(vq, &r->chain);
		if (p == VQ_EMPTY)
			break;
		if (p < 0) {
			virtio_dev_needs_reset(d, "request queue: %s", vq_strerror(p));
			return;
		}
		uint32_t want = r->chain.writable_len < RNG_MAX_REQ ? r->chain.writable_len : RNG_MAX_REQ;
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
	(void)d;
	return 0;
}

static void rng_reset(struct virtio_dev *d)
{
	(void)d; /* nothing in flight: every request completes in notify */
}

static void rng_destroy(struct virtio_dev *d)
{
	struct rng *r = d->priv;
	vq_chain_free(&r->chain);
	free(r);
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
	if (!virtio_pci_create(vm, &rng_ops, r, 0, "virtio-rng0", err)) {
		vq_chain_free(&r->chain);
		free(r);
		return -1;
	}
	return 0;
}

KITE_DEVICE(virtio_rng, {.name = "virtio-rng", .create = rng_create});
