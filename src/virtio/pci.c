/* virtio 1.x over PCI (virtio spec 4.1, "modern" only): one 32 KiB memory BAR
 * holding the common configuration, ISR, device configuration, notification
 * area and the MSI-X table and PBA, described by vendor capabilities.
 *
 * Hot path: each queue's notification address is an ioeventfd, each MSI-X
 * vector an irqfd on its own GSI with an MSI route, so a kick and an interrupt
 * never leave the kernel on the vCPU side; the device's event thread reads the
 * eventfds. Accesses that do reach userspace (configuration, a notify of an
 * odd size) take the device lock. */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/pci.h"
#include "snapshot/snapfile.h"
#include "vmm/vm.h"

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_DEVICE_VIRTIO_MODERN 0x1040 /* + device type */

/* BAR0 layout. */
#define BAR_SIZE 0x8000
#define OFF_COMMON 0x0000
#define OFF_ISR 0x1000
#define OFF_DEVICE 0x2000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX_TABLE 0x4000
#define OFF_MSIX_PBA 0x5000
#define NOTIFY_MULT 4
#define COMMON_LEN 0x38
#define DEVICE_CFG_MAX 0x1000

/* Capabilities in configuration space. */
#define CAP_COMMON 0x40
#define CAP_NOTIFY 0x50
#define CAP_ISR 0x64
#define CAP_DEVICE 0x74
#define CAP_MSIX 0x84
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define MSIX_ENABLE 0x8000
#define MSIX_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 1u

#define MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)

struct msix_entry {
	uint64_t addr;
	uint32_t data;
	uint32_t ctrl;
};

struct virtio_watch {
	int fd;
	uint32_t events;
	virtio_watch_fn cb;
	void *ctx;
	struct virtio_watch *next;
};

struct vpci {
	struct pci_dev pci;
	struct virtio_dev *d;
	uint32_t dev_feature_select, drv_feature_select;
	uint64_t drv_features; /* written by the driver, before FEATURES_OK */
	uint16_t config_vector;
	uint16_t queue_select;
	uint8_t isr;
	unsigned intx_gsi;
	/* MSI-X */
	unsigned nr_vectors;
	struct msix_entry msix[MAX_VECTORS];
	uint64_t pending; /* PBA bits */
	int irqfd[MAX_VECTORS];
	int gsi[MAX_VECTORS];
	/* ioeventfds as registered: where, and whether */
	uint64_t notify_base;
	bool ioeventfds_on;
	bool memory_on; /* memory decoding enabled in the command register */
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }

static uint64_t load_le(const uint8_t *data, unsigned size)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static void store_le(uint8_t *data, unsigned size, uint64_t v)
{
	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(v >> (8 * i));
}

static bool msix_enabled(const struct vpci *t)
{
	return get16(t->pci.cfg + CAP_MSIX + 2) & MSIX_ENABLE;
}

static bool msix_masked_all(const struct vpci *t)
{
	return get16(t->pci.cfg + CAP_MSIX + 2) & MSIX_MASKALL;
}

/* ---- interrupts ---- */

static void fire_vector(struct vpci *t, unsigned v)
{
	uint64_t one = 1;
	if (write(t->irqfd[v], &one, sizeof(one)) < 0)
		log_debug("%s: irqfd write: %s", t->d->name, strerror(errno));
	t->d->interrupts++;
}

/* Sends the interrupt for vector v (MSI-X) or the ISR bit (INTx). */
static void interrupt(struct vpci *t, uint16_t vector, uint8_t isr_bit)
{
	if (!msix_enabled(t)) {
		t->isr |= isr_bit;
		if (t->intx_gsi)
			vm_irq_set(t->d->vm, t->intx_gsi, 1);
		t->d->interrupts++;
		return;
	}
	if (vector >= t->nr_vectors || t->irqfd[vector] < 0)
		return; /* VIRTIO_NO_VECTOR or nonsense: the driver asked for none */
	if (msix_masked_all(t) || (t->msix[vector].ctrl & MSIX_ENTRY_MASKED)) {
		t->pending |= 1ULL << vector;
		return;
	}
	fire_vector(t, vector);
}

/* After a change to the table or the function mask: route unmasked vectors,
 * deliver what was held back while they were masked. */
static void msix_update(struct vpci *t)
{
	if (!msix_enabled(t))
		return;
	for (unsigned v = 0; v < t->nr_vectors; v++) {
		struct msix_entry *e = &t->msix[v];
		if (e->ctrl & MSIX_ENTRY_MASKED || t->gsi[v] < 0)
			continue;
		vm_gsi_set_msi(t->d->vm, (unsigned)t->gsi[v], e->addr, e->data);
		if (!msix_masked_all(t) && (t->pending & (1ULL << v))) {
			t->pending &= ~(1ULL << v);
			fire_vector(t, v);
		}
	}
}

void virtio_dev_signal(struct virtio_dev *d, unsigned q)
{
	if (q >= d->ops->num_queues || !d->queues[q].ready)
		return;
	if (!vq_should_notify(&d->queues[q].vq))
		return;
	if (!d->transport) { /* a device driven directly by a unit test */
		d->interrupts++;
		return;
	}
	interrupt(d->transport, d->queues[q].msix_vector, 1);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	struct vpci *t = d->transport;
	d->config_generation++;
	if (t && (d->status & VIRTIO_STATUS_DRIVER_OK))
		interrupt(t, t->config_vector, 2);
}

void virtio_dev_needs_reset(struct virtio_dev *d, const char *fmt, ...)
{
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("%s: %s; the device needs a reset", d->name, why);
	d->errors++;
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	virtio_dev_config_changed(d);
}

struct vq *virtio_dev_queue(struct virtio_dev *d, unsigned q)
{
	if (q >= d->ops->num_queues || !d->queues[q].ready || !(d->status & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	return &d->queues[q].vq;
}

unsigned virtio_dev_inflight(const struct virtio_dev *d, unsigned q)
{
	if (q >= d->ops->num_queues || !d->queues[q].ready)
		return 0;
	return d->queues[q].vq.inflight;
}

int virtio_dev_check_idle(const struct virtio_dev *d, uint32_t skip, int code, struct kite_err *err)
{
	/* A device that needs a reset is quiet until the driver resets it, and
	 * the reset forgets whatever it held. */
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return 0;
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		unsigned n = virtio_dev_inflight(d, q);
		if (n && !(skip & (1u << q)))
			return err_set(err, code, "%s: queue %u has %u chains in flight; the device keeps none in a snapshot",
				       d->name, q, n);
	}
	return 0;
}

/* ---- the event thread ---- */

static struct virtio_watch *watch_find(struct virtio_dev *d, int fd)
{
	for (struct virtio_watch *w = d->watches; w; w = w->next)
		if (w->fd == fd)
			return w;
	return NULL;
}

static bool watch_alive(struct virtio_dev *d, const struct virtio_watch *x)
{
	for (struct virtio_watch *w = d->watches; w; w = w->next)
		if (w == x)
			return true;
	return false;
}

int virtio_dev_watch(struct virtio_dev *d, int fd, uint32_t events, virtio_watch_fn cb, void *ctx)
{
	/* The lock is recursive: callable from callbacks and from outside. */
	pthread_mutex_lock(&d->lock);
	int r = 0;
	struct virtio_watch *w = watch_find(d, fd);
	bool fresh = !w;
	if (fresh) {
		w = calloc(1, sizeof(*w));
		if (!w) {
			r = -1;
			goto out;
		}
		w->fd = fd;
	}
	w->events = events;
	w->cb = cb;
	w->ctx = ctx;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(d->epfd, fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0) {
		log_warn("%s: epoll_ctl fd %d: %s", d->name, fd, strerror(errno));
		if (fresh)
			free(w);
		r = -1;
		goto out;
	}
	if (fresh) {
		w->next = d->watches;
		d->watches = w;
	}
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

void virtio_dev_unwatch(struct virtio_dev *d, int fd)
{
	pthread_mutex_lock(&d->lock);
	for (struct virtio_watch **p = &d->watches; *p; p = &(*p)->next) {
		if ((*p)->fd == fd) {
			struct virtio_watch *w = *p;
			*p = w->next;
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
			free(w);
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

static void *event_thread(void *arg)
{
	struct virtio_dev *d = arg;
	char name[16];
	snprintf(name, sizeof(name), "%.15s", d->name);
	pthread_setname_np(pthread_self(), name);
	struct epoll_event evs[16];
	for (;;) {
		int n = epoll_wait(d->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("%s: epoll_wait: %s", d->name, strerror(errno));
			break;
		}
		bool stop = false;
		pthread_mutex_lock(&d->lock);
		for (int i = 0; i < n; i++) {
			struct virtio_watch *w = evs[i].data.ptr;
			if (!w) {
				stop = true;
				continue;
			}
			/* An earlier callback of this batch may have unwatched it. */
			if (watch_alive(d, w))
				w->cb(d, w->ctx, evs[i].events);
		}
		pthread_mutex_unlock(&d->lock);
		if (stop)
			break;
	}
	return NULL;
}

/* A queue's ioeventfd fired (or a userspace notify): hand it to the device. */
static void on_kick(struct virtio_dev *d, void *ctx, uint32_t events)
{
	(void)events;
	unsigned q = (unsigned)(uintptr_t)ctx;
	uint64_t n;
	if (read(d->queues[q].kick_fd, &n, sizeof(n)) < 0)
		return;
	d->kicks++;
	if ((d->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) != VIRTIO_STATUS_DRIVER_OK ||
	    !d->queues[q].ready)
		return;
	d->ops->notify(d, q);
}

/* ---- ioeventfds: one per queue at BAR0 + OFF_NOTIFY + q * NOTIFY_MULT ---- */

static int ioeventfd(struct virtio_dev *d, unsigned q, uint64_t addr, bool on)
{
	struct kvm_ioeventfd io = {
		.addr = addr,
		.len = 2, /* the driver writes the 16-bit queue index */
		.fd = d->queues[q].kick_fd,
		.flags = on ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	return ioctl(d->vm->vm_fd, KVM_IOEVENTFD, &io);
}

static void ioeventfds_set(struct vpci *t, bool on)
{
	struct virtio_dev *d = t->d;
	if (on == t->ioeventfds_on)
		return;
	uint64_t base = on ? (uint64_t)pci_bar_addr(&t->pci, 0) + OFF_NOTIFY : t->notify_base;
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		if (ioeventfd(d, q, base + q * NOTIFY_MULT, on) < 0 && on)
			log_warn("%s: KVM_IOEVENTFD queue %u: %s (notifies will trap)", d->name, q,
				 strerror(errno));
	t->notify_base = base;
	t->ioeventfds_on = on;
}

/* ---- device status ---- */

static void queue_defaults(struct virtio_dev *d)
{
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		struct virtio_queue *vq = &d->queues[q];
		vq_reset(&vq->vq);
		vq->size = d->ops->queue_max_size;
		vq->msix_vector = VIRTIO_NO_VECTOR;
		vq->enabled = false;
		vq->ready = false;
		vq->desc = vq->avail = vq->used = 0;
	}
}

static void device_reset(struct vpci *t)
{
	struct virtio_dev *d = t->d;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		d->ops->reset(d);
	ioeventfds_set(t, false);
	queue_defaults(d);
	d->status = 0;
	d->guest_features = 0;
	t->drv_features = 0;
	t->dev_feature_select = t->drv_feature_select = 0;
	t->config_vector = VIRTIO_NO_VECTOR;
	t->queue_select = 0;
	t->isr = 0;
	if (t->intx_gsi)
		vm_irq_set(d->vm, t->intx_gsi, 0);
}

static void driver_ok(struct vpci *t)
{
	struct virtio_dev *d = t->d;
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		struct virtio_queue *vq = &d->queues[q];
		if (!vq->enabled)
			continue;
		struct vq_config c = {
			.size = vq->size,
			.desc = vq->desc,
			.avail = vq->avail,
			.used = vq->used,
			.event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX),
			.indirect = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC),
		};
		if (c.size > d->ops->queue_max_size || vq_init(&vq->vq, &d->vm->mem, &c) < 0) {
			virtio_dev_needs_reset(d, "queue %u: size %u or rings (desc %#llx avail %#llx used %#llx) rejected",
					       q, c.size, (unsigned long long)c.desc, (unsigned long long)c.avail,
					       (unsigned long long)c.used);
			return;
		}
		vq->ready = true;
	}
	if (d->ops->activate(d) < 0) {
		virtio_dev_needs_reset(d, "the device could not start");
		return;
	}
	if (t->memory_on)
		ioeventfds_set(t, true);
	/* Chains made available before DRIVER_OK: look now. */
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		if (d->queues[q].ready && !(d->status & VIRTIO_STATUS_NEEDS_RESET))
			d->ops->notify(d, q);
}

static void set_status(struct vpci *t, uint8_t v)
{
	struct virtio_dev *d = t->d;
	if (v == 0) {
		device_reset(t);
		return;
	}
	uint8_t old = d->status;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* Accepted only as a subset of what we offered, with VERSION_1. */
		if ((t->drv_features & ~d->host_features) || !(t->drv_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		else
			d->guest_features = t->drv_features;
	}
	/* Bits stay set until a reset; NEEDS_RESET is the device's. */
	d->status = (uint8_t)(old | (v & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET));
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(d->status & VIRTIO_STATUS_FEATURES_OK)) {
			virtio_dev_needs_reset(d, "DRIVER_OK without FEATURES_OK");
			return;
		}
		driver_ok(t);
	}
}

/* ---- common configuration ---- */

static void common_read(struct vpci *t, uint64_t off, uint8_t *data, unsigned size)
{
	struct virtio_dev *d = t->d;
	uint8_t c[COMMON_LEN] = {0};
	put32(c + 0x00, t->dev_feature_select);
	if (t->dev_feature_select < 2)
		put32(c + 0x04, (uint32_t)(d->host_features >> (32 * t->dev_feature_select)));
	put32(c + 0x08, t->drv_feature_select);
	if (t->drv_feature_select < 2)
		put32(c + 0x0c, (uint32_t)(t->drv_features >> (32 * t->drv_feature_select)));
	put16(c + 0x10, t->config_vector);
	put16(c + 0x12, d->ops->num_queues);
	c[0x14] = d->status;
	c[0x15] = d->config_generation;
	put16(c + 0x16, t->queue_select);
	if (t->queue_select < d->ops->num_queues) {
		struct virtio_queue *q = &d->queues[t->queue_select];
		put16(c + 0x18, q->size);
		put16(c + 0x1a, q->msix_vector);
		put16(c + 0x1c, q->enabled);
		put16(c + 0x1e, t->queue_select); /* notify offset, in NOTIFY_MULT units */
		store_le(c + 0x20, 8, q->desc);
		store_le(c + 0x28, 8, q->avail);
		store_le(c + 0x30, 8, q->used);
	}
	if (off + size <= COMMON_LEN)
		memcpy(data, c + off, size);
}

/* A 64-bit ring address written whole or as two 32-bit halves. */
static void set_addr(uint64_t *a, uint64_t off_in_field, uint64_t v, unsigned size)
{
	if (size == 8 && off_in_field == 0)
		*a = v;
	else if (size == 4 && off_in_field == 0)
		*a = (*a & 0xffffffff00000000ULL) | (uint32_t)v;
	else if (size == 4 && off_in_field == 4)
		*a = (*a & 0xffffffffULL) | (v << 32);
}

static void common_write(struct vpci *t, uint64_t off, const uint8_t *data, unsigned size)
{
	struct virtio_dev *d = t->d;
	uint64_t v = load_le(data, size);
	bool live = d->status & VIRTIO_STATUS_DRIVER_OK;
	struct virtio_queue *q = t->queue_select < d->ops->num_queues ? &d->queues[t->queue_select] : NULL;
	switch (off) {
	case 0x00:
		if (size == 4)
			t->dev_feature_select = (uint32_t)v;
		return;
	case 0x08:
		if (size == 4)
			t->drv_feature_select = (uint32_t)v;
		return;
	case 0x0c:
		if (size == 4 && t->drv_feature_select < 2 && !(d->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * t->drv_feature_select;
			t->drv_features = (t->drv_features & ~(0xffffffffULL << sh)) | (v << sh);
		}
		return;
	case 0x10:
		if (size == 2)
			t->config_vector = (uint16_t)v;
		return;
	case 0x14:
		if (size == 1)
			set_status(t, (uint8_t)v);
		return;
	case 0x16:
		if (size == 2)
			t->queue_select = (uint16_t)v;
		return;
	}
	/* Per-queue fields: only for a valid queue, and not while it runs. */
	if (!q || live)
		return;
	if (off == 0x18 && size == 2) {
		q->size = (uint16_t)v; /* checked at DRIVER_OK */
	} else if (off == 0x1a && size == 2) {
		q->msix_vector = (uint16_t)v;
	} else if (off == 0x1c && size == 2) {
		q->enabled = v == 1;
	} else if (off >= 0x20 && off < 0x28) {
		set_addr(&q->desc, off - 0x20, v, size);
	} else if (off >= 0x28 && off < 0x30) {
		set_addr(&q->avail, off - 0x28, v, size);
	} else if (off >= 0x30 && off < 0x38) {
		set_addr(&q->used, off - 0x30, v, size);
	}
}

/* A queue_msix_vector/config_msix_vector the device cannot use reads back as
 * NO_VECTOR (4.1.4.3): every vector is ours here, so only range matters. */
static void fix_vectors(struct vpci *t)
{
	if (t->config_vector != VIRTIO_NO_VECTOR && t->config_vector >= t->nr_vectors)
		t->config_vector = VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < t->d->ops->num_queues; q++) {
		uint16_t *v = &t->d->queues[q].msix_vector;
		if (*v != VIRTIO_NO_VECTOR && *v >= t->nr_vectors)
			*v = VIRTIO_NO_VECTOR;
	}
}

/* ---- BAR0 ---- */

static void bar_read(struct pci_dev *p, unsigned bar, uint64_t off, uint8_t *data, unsigned size)
{
	struct vpci *t = p->opaque;
	struct virtio_dev *d = t->d;
	if (bar != 0)
		return;
	pthread_mutex_lock(&d->lock);
	if (off < OFF_COMMON + COMMON_LEN) {
		common_read(t, off, data, size);
	} else if (off == OFF_ISR && size == 1) {
		data[0] = t->isr; /* read clears, and lowers INTx */
		t->isr = 0;
		if (t->intx_gsi)
			vm_irq_set(d->vm, t->intx_gsi, 0);
	} else if (off >= OFF_DEVICE && off - OFF_DEVICE + size <= d->ops->config_len) {
		if (size != 8)
			d->ops->config_read(d, (uint32_t)(off - OFF_DEVICE), data, size);
		else /* two halves, as the spec's 64-bit fields may be read */
			for (unsigned h = 0; h < 2; h++)
				d->ops->config_read(d, (uint32_t)(off - OFF_DEVICE + 4 * h), data + 4 * h, 4);
	} else if (off >= OFF_MSIX_TABLE && off + size <= OFF_MSIX_TABLE + 16 * (uint64_t)t->nr_vectors) {
		struct msix_entry *e = &t->msix[(off - OFF_MSIX_TABLE) / 16];
		uint8_t raw[16];
		store_le(raw, 8, e->addr);
		store_le(raw + 8, 4, e->data);
		store_le(raw + 12, 4, e->ctrl);
		unsigned in = (unsigned)((off - OFF_MSIX_TABLE) % 16);
		if (in + size <= 16)
			memcpy(data, raw + in, size);
	} else if (off >= OFF_MSIX_PBA && off + size <= OFF_MSIX_PBA + 8) {
		store_le(data, size, t->pending >> (8 * (off - OFF_MSIX_PBA)));
	}
	pthread_mutex_unlock(&d->lock);
}

static void bar_write(struct pci_dev *p, unsigned bar, uint64_t off, const uint8_t *data, unsigned size)
{
	struct vpci *t = p->opaque;
	struct virtio_dev *d = t->d;
	if (bar != 0)
		return;
	pthread_mutex_lock(&d->lock);
	if (off < OFF_COMMON + COMMON_LEN) {
		common_write(t, off, data, size);
		fix_vectors(t);
	} else if (off >= OFF_DEVICE && off - OFF_DEVICE + size <= d->ops->config_len) {
		if (d->ops->config_write && size <= 4)
			d->ops->config_write(d, (uint32_t)(off - OFF_DEVICE), data, size);
	} else if (off >= OFF_NOTIFY && off < OFF_NOTIFY + NOTIFY_MULT * (uint64_t)d->ops->num_queues) {
		/* No ioeventfd caught it (not registered yet, or an odd size): same path. */
		unsigned q = (unsigned)((off - OFF_NOTIFY) / NOTIFY_MULT);
		uint64_t one = 1;
		if (write(d->queues[q].kick_fd, &one, sizeof(one)) < 0)
			log_debug("%s: kick: %s", d->name, strerror(errno));
	} else if (off >= OFF_MSIX_TABLE && off + size <= OFF_MSIX_TABLE + 16 * (uint64_t)t->nr_vectors &&
		   (size == 4 || size == 8) && off % size == 0) {
		struct msix_entry *e = &t->msix[(off - OFF_MSIX_TABLE) / 16];
		unsigned in = (unsigned)((off - OFF_MSIX_TABLE) % 16);
		uint8_t raw[16];
		store_le(raw, 8, e->addr);
		store_le(raw + 8, 4, e->data);
		store_le(raw + 12, 4, e->ctrl);
		memcpy(raw + in, data, size);
		e->addr = load_le(raw, 8);
		e->data = (uint32_t)load_le(raw + 8, 4);
		e->ctrl = (uint32_t)load_le(raw + 12, 4) & MSIX_ENTRY_MASKED;
		msix_update(t);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Configuration-space writes (bus lock held): MSI-X enable/function mask, and
 * the BAR or memory decoding changing under live ioeventfds. */
static void cfg_write(struct pci_dev *p, unsigned off, uint32_t value, unsigned size)
{
	(void)value;
	struct vpci *t = p->opaque;
	struct virtio_dev *d = t->d;
	pthread_mutex_lock(&d->lock);
	if (off < CAP_MSIX + 4 && off + size > CAP_MSIX + 2)
		msix_update(t);
	bool touches_bar = off < PCI_BAR0 + 4 && off + size > PCI_BAR0;
	bool touches_cmd = off < 0x06 && off + size > 0x04;
	if (touches_bar || touches_cmd) {
		t->memory_on = p->cfg[0x04] & PCI_CMD_MEMORY;
		/* Re-register at the BAR's current address (or drop while decoding is off). */
		ioeventfds_set(t, false);
		if (t->memory_on && (d->status & VIRTIO_STATUS_DRIVER_OK))
			ioeventfds_set(t, true);
	}
	pthread_mutex_unlock(&d->lock);
}

static const struct pci_dev_ops vpci_ops = {.cfg_write = cfg_write, .bar_read = bar_read, .bar_write = bar_write};

/* ---- creation ---- */

static void put_cap(struct vpci *t, unsigned at, unsigned next, uint8_t type, uint32_t offset,
		    uint32_t length, uint8_t cap_len)
{
	uint8_t *c = t->pci.cfg + at;
	c[0] = PCI_CAP_ID_VNDR;
	c[1] = (uint8_t)next;
	c[2] = cap_len;
	c[3] = type;
	c[4] = 0; /* BAR 0 */
	put32(c + 8, offset);
	put32(c + 12, length);
}

static void pci_identity(struct vpci *t)
{
	const struct virtio_dev_ops *ops = t->d->ops;
	uint8_t *cfg = t->pci.cfg, *wm = t->pci.wmask;
	put16(cfg + 0x00, PCI_VENDOR_VIRTIO);
	put16(cfg + 0x02, (uint16_t)(PCI_DEVICE_VIRTIO_MODERN + ops->device_id));
	put16(cfg + 0x06, 0x0010); /* status: capability list */
	cfg[0x08] = 1;              /* revision: modern */
	uint32_t class = ops->device_id == VIRTIO_ID_NET     ? 0x020000  /* ethernet */
			 : ops->device_id == VIRTIO_ID_BLOCK ? 0x018000  /* mass storage */
							     : 0xff0000; /* other */
	cfg[0x09] = (uint8_t)class;
	cfg[0x0a] = (uint8_t)(class >> 8);
	cfg[0x0b] = (uint8_t)(class >> 16);
	put16(cfg + 0x2c, PCI_VENDOR_VIRTIO);
	put16(cfg + 0x2e, 0x0040); /* subsystem id >= 0x40 for modern devices */
	cfg[0x34] = CAP_COMMON;
	cfg[0x3d] = 1; /* INTA# */
	put16(wm + 0x04, 0x0406); /* memory, bus master, INTx disable */
	wm[0x3c] = 0xff;          /* interrupt line */

	put_cap(t, CAP_COMMON, CAP_NOTIFY, 1, OFF_COMMON, COMMON_LEN, 16);
	put_cap(t, CAP_NOTIFY, CAP_ISR, 2, OFF_NOTIFY, NOTIFY_MULT * ops->num_queues, 20);
	put32(cfg + CAP_NOTIFY + 16, NOTIFY_MULT);
	put_cap(t, CAP_ISR, CAP_DEVICE, 3, OFF_ISR, 1, 16);
	put_cap(t, CAP_DEVICE, CAP_MSIX, 4, OFF_DEVICE, ops->config_len ? ops->config_len : 1, 16);

	uint8_t *m = cfg + CAP_MSIX;
	m[0] = PCI_CAP_ID_MSIX;
	m[1] = 0;
	put16(m + 2, (uint16_t)(t->nr_vectors - 1));
	put32(m + 4, OFF_MSIX_TABLE); /* BIR 0 */
	put32(m + 8, OFF_MSIX_PBA);
	put16(wm + CAP_MSIX + 2, MSIX_ENABLE | MSIX_MASKALL);
	t->pci.bar_size[0] = BAR_SIZE;
}

static void vpci_free(struct vpci *t)
{
	struct virtio_dev *d = t->d;
	for (unsigned v = 0; v < MAX_VECTORS; v++)
		if (t->irqfd[v] >= 0) {
			if (t->gsi[v] >= 0) {
				struct kvm_irqfd irq = {.fd = (uint32_t)t->irqfd[v], .gsi = (uint32_t)t->gsi[v],
							.flags = KVM_IRQFD_FLAG_DEASSIGN};
				ioctl(d->vm->vm_fd, KVM_IRQFD, &irq);
			}
			close(t->irqfd[v]);
		}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (d->queues[q].kick_fd >= 0)
			close(d->queues[q].kick_fd);
	while (d->watches) {
		struct virtio_watch *w = d->watches;
		d->watches = w->next;
		free(w);
	}
	if (d->epfd >= 0)
		close(d->epfd);
	if (d->stop_fd >= 0)
		close(d->stop_fd);
	pthread_mutex_destroy(&d->lock);
	free(d);
	free(t);
}

struct virtio_dev *virtio_pci_create(struct vm *vm, const struct virtio_dev_ops *ops, void *priv,
				     uint64_t features, const char *name, struct kite_err *err)
{
	if (!vm->pci) {
		err_set(err, KITE_EXIT_ERROR, "%s: no PCI bus", name);
		return NULL;
	}
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES || ops->config_len > DEVICE_CFG_MAX ||
	    vm->nr_virtio >= sizeof(vm->virtio) / sizeof(vm->virtio[0])) {
		err_set(err, KITE_EXIT_ERROR, "%s: too many queues or devices", name);
		return NULL;
	}
	struct vpci *t = calloc(1, sizeof(*t));
	struct virtio_dev *d = calloc(1, sizeof(*d));
	if (!t || !d) {
		free(t);
		free(d);
		err_set(err, KITE_EXIT_ERROR, "%s: out of memory", name);
		return NULL;
	}
	t->d = d;
	d->transport = t;
	d->ops = ops;
	d->priv = priv;
	d->vm = vm;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->host_features = features | VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
			   VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&d->lock, &a);
	pthread_mutexattr_destroy(&a);
	d->epfd = d->stop_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		d->queues[q].kick_fd = -1;
	t->nr_vectors = ops->num_queues + 1u;
	for (unsigned v = 0; v < MAX_VECTORS; v++) {
		t->irqfd[v] = -1;
		t->gsi[v] = -1;
		t->msix[v].ctrl = MSIX_ENTRY_MASKED;
	}
	t->config_vector = VIRTIO_NO_VECTOR;
	t->pci.ops = &vpci_ops;
	t->pci.opaque = t;
	queue_defaults(d);
	pci_identity(t);

	const char *what = NULL;
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->epfd < 0 || d->stop_fd < 0) {
		what = "epoll/eventfd";
		goto fail;
	}
	struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->stop_fd, &sev) < 0) {
		what = "epoll_ctl";
		goto fail;
	}
	for (unsigned q = 0; q < ops->num_queues; q++) {
		d->queues[q].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->queues[q].kick_fd < 0 ||
		    virtio_dev_watch(d, d->queues[q].kick_fd, EPOLLIN, on_kick, (void *)(uintptr_t)q) < 0) {
			what = "queue eventfd";
			goto fail;
		}
	}
	for (unsigned v = 0; v < t->nr_vectors; v++) {
		t->irqfd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		t->gsi[v] = vm_gsi_alloc(vm);
		if (t->irqfd[v] < 0 || t->gsi[v] < 0) {
			what = "MSI-X vector (eventfd or GSI)";
			goto fail;
		}
		struct kvm_irqfd irq = {.fd = (uint32_t)t->irqfd[v], .gsi = (uint32_t)t->gsi[v]};
		if (ioctl(vm->vm_fd, KVM_IRQFD, &irq) < 0) {
			t->gsi[v] = -1; /* not assigned: nothing to deassign */
			what = "KVM_IRQFD";
			goto fail;
		}
	}
	pthread_mutex_lock(&vm->pci->lock);
	int slot = pci_bus_add(vm->pci, &t->pci);
	pthread_mutex_unlock(&vm->pci->lock);
	if (slot < 0) {
		err_set(err, KITE_EXIT_ERROR, "%s: no free PCI slot or BAR space", name);
		vpci_free(t);
		return NULL;
	}
	/* INTx for drivers without MSI-X: a GSI per slot on the IOAPIC's PCI pins. */
	t->intx_gsi = 16 + (unsigned)slot % 8;
	t->pci.cfg[0x3c] = (uint8_t)t->intx_gsi;
	if (pthread_create(&d->thread, NULL, event_thread, d) != 0) {
		pthread_mutex_lock(&vm->pci->lock);
		vm->pci->slot[slot] = NULL;
		pthread_mutex_unlock(&vm->pci->lock);
		what = "thread";
		goto fail;
	}
	d->thread_started = true;
	vm->virtio[vm->nr_virtio++] = d;
	log_debug("%s: PCI 00:%02x.0, BAR0 %#x, %u queues", name, slot, pci_bar_addr(&t->pci, 0), ops->num_queues);
	return d;
fail:
	err_set(err, KITE_EXIT_ERROR, "%s: %s: %s", name, what, strerror(errno));
	vpci_free(t);
	return NULL;
}

struct virtio_dev *virtio_dev_next(struct vm *vm, struct virtio_dev *prev)
{
	unsigned next = 0;
	if (prev) {
		while (next < vm->nr_virtio && vm->virtio[next] != prev)
			next++;
		next++;
	}
	return next < vm->nr_virtio ? vm->virtio[next] : NULL;
}

struct virtio_dev *virtio_dev_find(struct vm *vm, const char *name)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		if (strcmp(vm->virtio[i]->name, name) == 0)
			return vm->virtio[i];
	return NULL;
}

/* At VM teardown (vCPUs stopped): stop each event thread, reset live devices
 * so backends let go of guest memory, free everything. */
void virtio_destroy_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		struct vpci *t = d->transport;
		if (d->thread_started) {
			uint64_t one = 1;
			if (write(d->stop_fd, &one, sizeof(one)) < 0)
				log_debug("%s: stop: %s", d->name, strerror(errno));
			pthread_join(d->thread, NULL);
		}
		pthread_mutex_lock(&d->lock);
		if (d->status & VIRTIO_STATUS_DRIVER_OK)
			d->ops->reset(d);
		ioeventfds_set(t, false);
		pthread_mutex_unlock(&d->lock);
		if (d->ops->destroy)
			d->ops->destroy(d);
		if (vm->pci)
			for (int s = 0; s < PCI_SLOTS; s++)
				if (vm->pci->slot[s] == &t->pci)
					vm->pci->slot[s] = NULL;
		vpci_free(t);
	}
	vm->nr_virtio = 0;
}

/* ---- snapshots ----
 *
 * Section "VIRT", instance = index in vm->virtio[], little-endian:
 *   u8 name length, name; u16 device_id; u16 num_queues
 *   u64 host_features, guest_features, drv_features
 *   u32 dev_feature_select, drv_feature_select
 *   u8 status, config_generation, isr; u16 config_vector, queue_select
 *   256 bytes of PCI configuration space (command, BAR0, MSI-X control, ...)
 *   u16 nr_vectors; per vector: u64 addr, u32 data, u32 ctrl; u64 PBA
 *   per queue: u16 size, msix_vector; u8 enabled, ready; u64 desc, avail, used;
 *              u16 last_avail, used_idx, signalled_used; u8 signalled_valid;
 *              u16 inflight; u32 vq error (two's complement); zeroes unless ready
 *   then the device's own bytes (ops->save / ops->restore).
 *
 * vCPUs are paused whenever these run, so taking the bus lock inside the device
 * lock (the reverse of cfg_write's order) cannot deadlock. */

#define SNAP_TAG "VIRT"

struct snap_queue {
	uint16_t size, msix_vector;
	bool enabled, ready;
	uint64_t desc, avail, used;
	struct vq vq; /* ready: initialised and positioned, copied in on apply */
};

struct snap_dev {
	uint64_t guest_features, drv_features;
	uint32_t dev_feature_select, drv_feature_select;
	uint8_t status, config_generation, isr;
	uint16_t config_vector, queue_select;
	uint8_t cfg[PCI_CFG_SIZE];
	struct msix_entry msix[MAX_VECTORS];
	uint64_t pending;
	struct snap_queue q[VIRTIO_MAX_QUEUES];
};

static void save_device(struct vpci *t, unsigned idx, struct snap_writer *w)
{
	struct virtio_dev *d = t->d;
	size_t nl = strnlen(d->name, sizeof(d->name) - 1);
	snapw_begin(w, SNAP_TAG, idx);
	snapw_u8(w, (uint8_t)nl);
	snapw_bytes(w, d->name, nl);
	snapw_u16(w, d->ops->device_id);
	snapw_u16(w, d->ops->num_queues);
	snapw_u64(w, d->host_features);
	snapw_u64(w, d->guest_features);
	snapw_u64(w, t->drv_features);
	snapw_u32(w, t->dev_feature_select);
	snapw_u32(w, t->drv_feature_select);
	snapw_u8(w, d->status);
	snapw_u8(w, d->config_generation);
	snapw_u8(w, t->isr);
	snapw_u16(w, t->config_vector);
	snapw_u16(w, t->queue_select);
	pthread_mutex_lock(&d->vm->pci->lock);
	snapw_bytes(w, t->pci.cfg, PCI_CFG_SIZE);
	pthread_mutex_unlock(&d->vm->pci->lock);
	snapw_u16(w, (uint16_t)t->nr_vectors);
	for (unsigned v = 0; v < t->nr_vectors; v++) {
		snapw_u64(w, t->msix[v].addr);
		snapw_u32(w, t->msix[v].data);
		snapw_u32(w, t->msix[v].ctrl);
	}
	snapw_u64(w, t->pending);
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		const struct virtio_queue *vq = &d->queues[q];
		struct vq_state st = {0};
		if (vq->ready)
			vq_get_state(&vq->vq, &st);
		snapw_u16(w, vq->size);
		snapw_u16(w, vq->msix_vector);
		snapw_u8(w, vq->enabled);
		snapw_u8(w, vq->ready);
		snapw_u64(w, vq->desc);
		snapw_u64(w, vq->avail);
		snapw_u64(w, vq->used);
		snapw_u16(w, st.last_avail);
		snapw_u16(w, st.used_idx);
		snapw_u16(w, st.signalled_used);
		snapw_u8(w, st.signalled_valid);
		snapw_u16(w, st.inflight);
		snapw_u32(w, (uint32_t)st.err);
	}
}

void virtio_quiesce_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		pthread_mutex_lock(&d->lock);
		d->quiesced = true;
		if ((d->status & VIRTIO_STATUS_DRIVER_OK) && d->ops->quiesce)
			d->ops->quiesce(d);
	}
}

static void notify_live_queues(struct virtio_dev *d)
{
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		if (d->queues[q].ready &&
		    (d->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) == VIRTIO_STATUS_DRIVER_OK)
			d->ops->notify(d, q);
}

void virtio_resume_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		if (!d->quiesced)
			continue;
		d->quiesced = false;
		notify_live_queues(d);
		pthread_mutex_unlock(&d->lock);
	}
}

void virtio_abandon_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		if (!d->quiesced)
			continue;
		/* As if the driver had reset it, without touching the backends: no
		 * kick or timer serves a queue again, so nothing the guest queued
		 * reaches a disk or network from this copy. */
		d->status = 0;
		d->quiesced = false;
		pthread_mutex_unlock(&d->lock);
	}
}

int virtio_save_all(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	/* Every refusal before the first byte: no half-written state. */
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		if (!d->ops->save)
			return err_set(err, KITE_EXIT_ERROR, "%s cannot be snapshotted yet", d->name);
		if (!d->quiesced)
			return err_set(err, KITE_EXIT_ERROR, "%s: not quiesced before the snapshot", d->name);
	}
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		pthread_mutex_lock(&d->lock);
		save_device(d->transport, i, w);
		int r = d->ops->save(d, w, err);
		snapw_end(w);
		pthread_mutex_unlock(&d->lock);
		if (r < 0) {
			if (!err->code)
				err_set(err, KITE_EXIT_ERROR, "%s: cannot save its state", d->name);
			return -1;
		}
	}
	return 0;
}

static bool power_of_two(unsigned v) { return v && !(v & (v - 1)); }

/* Reads and checks one device's transport state; changes nothing. */
static int parse_device(struct vpci *t, struct snap_cursor *c, struct snap_dev *s, struct kite_err *err)
{
	struct virtio_dev *d = t->d;
	const char *n = d->name;
	char name[32] = {0};
	uint8_t nl = snapc_u8(c);
	if (nl >= sizeof(name))
		return err_set(err, KITE_EXIT_IMAGE, "%s: the snapshot's device name is %u bytes long", n, nl);
	snapc_bytes(c, name, nl);
	uint16_t id = snapc_u16(c), nq = snapc_u16(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: virtio state section is short", n);
	if (strcmp(name, n) != 0 || id != d->ops->device_id)
		return err_set(err, KITE_EXIT_IMAGE,
			       "virtio device at this index: the snapshot has %s (device id %u), this VM has %s (device id %u)",
			       name, id, n, d->ops->device_id);
	if (nq != d->ops->num_queues)
		return err_set(err, KITE_EXIT_IMAGE, "%s: %u queues in the snapshot, the device has %u", n, nq,
			       d->ops->num_queues);
	uint64_t host = snapc_u64(c);
	s->guest_features = snapc_u64(c);
	s->drv_features = snapc_u64(c);
	s->dev_feature_select = snapc_u32(c);
	s->drv_feature_select = snapc_u32(c);
	s->status = snapc_u8(c);
	s->config_generation = snapc_u8(c);
	s->isr = snapc_u8(c);
	s->config_vector = snapc_u16(c);
	s->queue_select = snapc_u16(c);
	snapc_bytes(c, s->cfg, PCI_CFG_SIZE);
	uint16_t nv = snapc_u16(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: virtio state section is short", n);
	if (host != d->host_features)
		return err_set(err, KITE_EXIT_IMAGE, "%s: the snapshot's device offered features %#llx, this one offers %#llx",
			       n, (unsigned long long)host, (unsigned long long)d->host_features);
	if (s->guest_features & ~host)
		return err_set(err, KITE_EXIT_IMAGE, "%s: guest features %#llx are not a subset of the offered %#llx", n,
			       (unsigned long long)s->guest_features, (unsigned long long)host);
	const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED;
	if (s->status & ~known)
		return err_set(err, KITE_EXIT_IMAGE, "%s: device status %#x has unknown bits", n, s->status);
	bool features_ok = s->status & VIRTIO_STATUS_FEATURES_OK, live = s->status & VIRTIO_STATUS_DRIVER_OK;
	if (live && !features_ok)
		return err_set(err, KITE_EXIT_IMAGE, "%s: device status %#x has DRIVER_OK without FEATURES_OK", n,
			       s->status);
	if (features_ok && (s->drv_features != s->guest_features ||
			    !(s->guest_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))))
		return err_set(err, KITE_EXIT_IMAGE, "%s: accepted features %#llx (driver wrote %#llx) are not what FEATURES_OK accepts",
			       n, (unsigned long long)s->guest_features, (unsigned long long)s->drv_features);
	if (!features_ok && s->guest_features)
		return err_set(err, KITE_EXIT_IMAGE, "%s: features %#llx accepted without FEATURES_OK", n,
			       (unsigned long long)s->guest_features);
	if (s->isr & ~3u)
		return err_set(err, KITE_EXIT_IMAGE, "%s: ISR %#x has unknown bits", n, s->isr);
	if (nv != t->nr_vectors)
		return err_set(err, KITE_EXIT_IMAGE, "%s: %u MSI-X vectors in the snapshot, the device has %u", n, nv,
			       t->nr_vectors);
	if (s->config_vector != VIRTIO_NO_VECTOR && s->config_vector >= nv)
		return err_set(err, KITE_EXIT_IMAGE, "%s: configuration MSI-X vector %u out of range", n,
			       s->config_vector);
	unsigned off;
	if (pci_cfg_check(&t->pci, s->cfg, &off) < 0)
		return err_set(err, KITE_EXIT_IMAGE,
			       "%s: PCI configuration byte 0x%02x is 0x%02x in the snapshot, read-only 0x%02x here", n,
			       off, s->cfg[off], t->pci.cfg[off]);
	for (unsigned v = 0; v < nv; v++) {
		s->msix[v].addr = snapc_u64(c);
		s->msix[v].data = snapc_u32(c);
		s->msix[v].ctrl = snapc_u32(c);
		if (s->msix[v].ctrl & ~MSIX_ENTRY_MASKED)
			return err_set(err, KITE_EXIT_IMAGE, "%s: MSI-X vector %u control %#x has unknown bits", n, v,
				       s->msix[v].ctrl);
	}
	s->pending = snapc_u64(c);
	if (s->pending >> nv)
		return err_set(err, KITE_EXIT_IMAGE, "%s: MSI-X pending bits %#llx beyond vector %u", n,
			       (unsigned long long)s->pending, nv - 1);
	for (unsigned q = 0; q < nq; q++) {
		struct snap_queue *sq = &s->q[q];
		sq->size = snapc_u16(c);
		sq->msix_vector = snapc_u16(c);
		uint8_t enabled = snapc_u8(c), ready = snapc_u8(c);
		sq->desc = snapc_u64(c);
		sq->avail = snapc_u64(c);
		sq->used = snapc_u64(c);
		struct vq_state st;
		st.last_avail = snapc_u16(c);
		st.used_idx = snapc_u16(c);
		st.signalled_used = snapc_u16(c);
		uint8_t valid = snapc_u8(c);
		st.signalled_valid = valid;
		st.inflight = snapc_u16(c);
		st.err = (int)(int32_t)snapc_u32(c);
		if (c->bad)
			return err_set(err, KITE_EXIT_IMAGE, "%s: virtio state section is short", n);
		if (!power_of_two(sq->size) || sq->size > d->ops->queue_max_size)
			return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u size %u is not a power of two up to %u", n, q,
				       sq->size, d->ops->queue_max_size);
		if (sq->msix_vector != VIRTIO_NO_VECTOR && sq->msix_vector >= nv)
			return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u MSI-X vector %u out of range", n, q,
				       sq->msix_vector);
		if (enabled > 1 || ready > 1 || valid > 1)
			return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u flags (%u, %u, %u) are not 0 or 1", n, q,
				       enabled, ready, valid);
		sq->enabled = enabled;
		sq->ready = ready;
		if (ready && (!live || !enabled))
			return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u is running but %s", n, q,
				       live ? "not enabled" : "the driver is not ready");
		/* At DRIVER_OK an enabled queue either started or broke the device. */
		if (live && enabled && !ready && !(s->status & VIRTIO_STATUS_NEEDS_RESET))
			return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u is enabled but not running", n, q);
		if (!ready) {
			if (st.last_avail || st.used_idx || st.signalled_used || valid || st.inflight || st.err)
				return err_set(err, KITE_EXIT_IMAGE, "%s: queue %u is not running but has positions", n, q);
			continue;
		}
		/* The rings go through the checked translator, as at DRIVER_OK. */
		struct vq_config vc = {
			.size = sq->size, .desc = sq->desc, .avail = sq->avail, .used = sq->used,
			.event_idx = s->guest_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX),
			.indirect = s->guest_features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC),
		};
		if (vq_init(&sq->vq, &d->vm->mem, &vc) < 0)
			return err_set(err, KITE_EXIT_IMAGE,
				       "%s: queue %u rings (desc %#llx avail %#llx used %#llx, size %u) are misaligned or not in guest RAM",
				       n, q, (unsigned long long)sq->desc, (unsigned long long)sq->avail,
				       (unsigned long long)sq->used, sq->size);
		const char *why;
		if (vq_set_state(&sq->vq, &st, &why) < 0)
			return err_set(err, KITE_EXIT_IMAGE,
				       "%s: queue %u positions (available %u, used %u, in flight %u, error %d): %s", n, q,
				       st.last_avail, st.used_idx, st.inflight, st.err, why);
	}
	return 0;
}

/* Takes a checked state: plain memory only, nothing the kernel or a backend sees. */
static void apply_device(struct vpci *t, const struct snap_dev *s)
{
	struct virtio_dev *d = t->d;
	d->guest_features = s->guest_features;
	d->status = s->status;
	d->config_generation = s->config_generation;
	t->drv_features = s->drv_features;
	t->dev_feature_select = s->dev_feature_select;
	t->drv_feature_select = s->drv_feature_select;
	t->isr = s->isr;
	t->config_vector = s->config_vector;
	t->queue_select = s->queue_select;
	memcpy(t->msix, s->msix, sizeof(t->msix[0]) * t->nr_vectors);
	t->pending = s->pending;
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		const struct snap_queue *sq = &s->q[q];
		struct virtio_queue *vq = &d->queues[q];
		vq->size = sq->size;
		vq->msix_vector = sq->msix_vector;
		vq->enabled = sq->enabled;
		vq->ready = sq->ready;
		vq->desc = sq->desc;
		vq->avail = sq->avail;
		vq->used = sq->used;
		if (sq->ready)
			vq->vq = sq->vq;
		else
			vq_reset(&vq->vq);
	}
	pthread_mutex_lock(&d->vm->pci->lock);
	pci_cfg_load(&t->pci, s->cfg);
	t->memory_on = t->pci.cfg[0x04] & PCI_CMD_MEMORY;
	pthread_mutex_unlock(&d->vm->pci->lock);
}

/* What DRIVER_OK and the guest's MSI-X programming built, built again. */
static void rebuild_device(struct vpci *t)
{
	struct virtio_dev *d = t->d;
	pthread_mutex_lock(&d->lock);
	msix_update(t);
	if (!msix_enabled(t) && t->isr && t->intx_gsi)
		vm_irq_set(d->vm, t->intx_gsi, 1);
	if (d->status & VIRTIO_STATUS_DRIVER_OK) {
		if (d->ops->activate(d) < 0) {
			virtio_dev_needs_reset(d, "the device could not start after the restore");
		} else {
			if (t->memory_on)
				ioeventfds_set(t, true);
			/* Chains made available while the VM was paused. */
			notify_live_queues(d);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

int virtio_restore_all(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	unsigned n = snapr_count(r, SNAP_TAG);
	if (n != vm->nr_virtio)
		return err_set(err, KITE_EXIT_IMAGE, "the snapshot has %u virtio devices, this VM has %u", n,
			       vm->nr_virtio);
	struct snap_dev *s = malloc(sizeof(*s));
	if (!s)
		return err_set(err, KITE_EXIT_ERROR, "virtio restore: out of memory");
	int rc = 0;
	/* Every device checked and read before any is started. */
	for (unsigned i = 0; i < vm->nr_virtio && rc == 0; i++) {
		struct virtio_dev *d = vm->virtio[i];
		struct vpci *t = d->transport;
		struct snap_cursor c;
		if (!snapr_find(r, SNAP_TAG, i, &c)) {
			rc = err_set(err, KITE_EXIT_IMAGE, "%s: the snapshot has no state for virtio device %u", d->name, i);
			break;
		}
		memset(s, 0, sizeof(*s));
		pthread_mutex_lock(&d->lock);
		if (!d->ops->restore)
			rc = err_set(err, KITE_EXIT_IMAGE, "%s cannot be restored from a snapshot", d->name);
		else if (parse_device(t, &c, s, err) < 0)
			rc = -1;
		if (rc == 0) {
			apply_device(t, s);
			if (d->ops->restore(d, &c, err) < 0) {
				if (!err->code)
					err_set(err, KITE_EXIT_IMAGE, "%s: device state refused", d->name);
				rc = -1;
			} else if (!snapc_done(&c)) {
				rc = err_set(err, KITE_EXIT_IMAGE, "%s: virtio state section is %s", d->name,
					     c.bad ? "short" : "longer than its fields");
			}
		}
		pthread_mutex_unlock(&d->lock);
	}
	free(s);
	if (rc < 0)
		return -1;
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		rebuild_device(vm->virtio[i]->transport);
	return 0;
}

#include "devices/device.h"

static int virtio_transport_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	return virtio_save_all(vm, w, err);
}

static int virtio_transport_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	return virtio_restore_all(vm, r, err);
}

static int virtio_transport_create(struct vm *vm, struct kite_err *err)
{
	(void)vm;
	(void)err;
	return 0;
}

/* Registered after every device file (src/virtio/pci.c sorts after blk.c,
 * balloon.c, net.c; before rng.c and vsock.c, so destroy runs from here for
 * all of them: devices_destroy walks the registry once, in order, after the
 * vCPUs stopped, and this hook frees every virtio device whatever its file). */
KITE_DEVICE(virtio_transport, {.name = "virtio-pci", .create = virtio_transport_create,
			       .destroy = virtio_destroy_all, .save = virtio_transport_save,
			       .restore = virtio_transport_restore});
