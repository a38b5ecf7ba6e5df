#include "virtio/virtqueue.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

/* Ring layouts (virtio 1.x, 2.7): offsets in bytes from each part's start.
 *   avail: le16 flags, le16 idx, le16 ring[N], le16 used_event
 *   used:  le16 flags, le16 idx, {le32 id, le32 len} ring[N], le16 avail_event */
#define AVAIL_IDX 2
#define AVAIL_RING(i) (4 + 2 * (size_t)(i))
#define USED_IDX 2
#define USED_RING(i) (4 + 8 * (size_t)(i))

static size_t desc_bytes(uint16_t n) { return (size_t)VQ_DESC_SIZE * n; }
static size_t avail_bytes(uint16_t n) { return 6 + 2 * (size_t)n; }
static size_t used_bytes(uint16_t n) { return 6 + 8 * (size_t)n; }

/* Guest-shared scalars: one access each (the guest may change them under us),
 * at offsets whose alignment vq_init checked. */
static uint16_t load16(const uint8_t *p, int order)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, order));
}

static void store16(uint8_t *p, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), order);
}

static void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One copy of a descriptor, then a compiler barrier: every later check and use
 * sees these values, not a re-read the guest could have changed. Indirect
 * tables need not be aligned, hence memcpy rather than field loads. */
static struct desc desc_read(const uint8_t *table, uint32_t i)
{
	uint8_t raw[VQ_DESC_SIZE];
	memcpy(raw, table + (size_t)i * VQ_DESC_SIZE, sizeof(raw));
	__asm__ __volatile__("" ::: "memory");
	struct desc d;
	uint64_t a;
	uint32_t l;
	uint16_t f, n;
	memcpy(&a, raw, 8);
	memcpy(&l, raw + 8, 4);
	memcpy(&f, raw + 12, 2);
	memcpy(&n, raw + 14, 2);
	d.addr = le64toh(a);
	d.len = le32toh(l);
	d.flags = le16toh(f);
	d.next = le16toh(n);
	return d;
}

static int ring_map(const struct gmem *m, uint64_t gpa, size_t len, uint64_t align,
		    uint8_t **out)
{
	if (gpa & (align - 1))
		return -1;
	uint8_t *p = gmem_ptr(m, gpa, len);
	/* The host view must be as aligned as the guest address for the atomic
	 * accesses; it is for page-aligned backings, check rather than assume. */
	if (!p || ((uintptr_t)p & (align - 1)))
		return -1;
	*out = p;
	return 0;
}

int vq_init(struct vq *vq, const struct gmem *mem, const struct vq_config *cfg)
{
	memset(vq, 0, sizeof(*vq));
	vq->err = VQ_ERR_CONFIG;
	uint16_t n = cfg->size;
	if (n == 0 || n > VQ_MAX_SIZE || (n & (n - 1)))
		return VQ_ERR_CONFIG;
	if (ring_map(mem, cfg->desc, desc_bytes(n), 16, &vq->desc) < 0 ||
	    ring_map(mem, cfg->avail, avail_bytes(n), 2, &vq->avail) < 0 ||
	    ring_map(mem, cfg->used, used_bytes(n), 4, &vq->used) < 0) {
		vq->desc = vq->avail = vq->used = NULL;
		return VQ_ERR_CONFIG;
	}
	vq->mem = mem;
	vq->cfg = *cfg;
	vq->err = 0;
	return 0;
}

void vq_reset(struct vq *vq)
{
	memset(vq, 0, sizeof(*vq));
	vq->err = VQ_ERR_CONFIG;
}

void vq_set_indices(struct vq *vq, uint16_t last_avail, uint16_t used_idx)
{
	vq->last_avail = vq->shadow_avail = last_avail;
	vq->used_idx = vq->signalled_used = used_idx;
	vq->signalled_valid = false;
	vq->inflight = 0;
}

void vq_get_state(const struct vq *vq, struct vq_state *s)
{
	*s = (struct vq_state){
		.last_avail = vq->last_avail,
		.used_idx = vq->used_idx,
		.signalled_used = vq->signalled_used,
		.signalled_valid = vq->signalled_valid,
		.inflight = (uint16_t)vq->inflight,
		.err = vq->err,
	};
}

int vq_set_state(struct vq *vq, const struct vq_state *s, const char **why)
{
	if (!vq->avail || vq->err == VQ_ERR_CONFIG) {
		*why = "queue not configured";
		return -1;
	}
	if (s->inflight > vq->cfg.size) {
		*why = "more chains in flight than the queue size";
		return -1;
	}
	if ((uint16_t)(s->used_idx + s->inflight) != s->last_avail) {
		*why = "used index plus chains in flight is not the available position";
		return -1;
	}
	if (s->err != 0 && (s->err > VQ_ERR_BROKEN || s->err < VQ_ERR_PUSH)) {
		*why = "unknown queue error";
		return -1;
	}
	vq->last_avail = vq->shadow_avail = s->last_avail;
	vq->used_idx = s->used_idx;
	vq->signalled_used = s->signalled_used;
	vq->signalled_valid = s->signalled_valid;
	vq->inflight = s->inflight;
	vq->err = s->err;
	return 0;
}

int vq_unpop(struct vq *vq, uint16_t n)
{
	if (n > vq->inflight)
		return -1;
	/* shadow_avail stays: those chains are available again, and the
	 * available count plus in flight is what it was. */
	vq->last_avail = (uint16_t)(vq->last_avail - n);
	vq->inflight -= n;
	return 0;
}

static int fail(struct vq *vq, struct vq_chain *c, int err)
{
	vq->err = err;
	c->nr = c->nr_readable = 0;
	c->readable_len = c->writable_len = 0;
	return err;
}

/* Reads the avail idx once and checks it: every chain the driver has made
 * available and not got back holds at least one descriptor, so those not yet
 * popped plus those in flight never exceed the queue size. This also bounds
 * the requests a device has in flight, whatever the driver publishes. */
static int refresh_avail(struct vq *vq)
{
	if (vq->cfg.event_idx) {
		/* Ask to be told about the next chain, then look: the full fence
		 * orders our avail_event store before the idx load, so a chain the
		 * driver adds after our look also sees our request and notifies. */
		store16(vq->used + USED_RING(vq->cfg.size), vq->last_avail, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	/* Acquire: ring entries and descriptors are read after the idx. */
	uint16_t idx = load16(vq->avail + AVAIL_IDX, __ATOMIC_ACQUIRE);
	if ((uint32_t)(uint16_t)(idx - vq->last_avail) + vq->inflight > vq->cfg.size)
		return VQ_ERR_AVAIL_IDX;
	vq->shadow_avail = idx;
	return 0;
}

static int chain_add(struct vq_chain *c, uint16_t size, const struct desc *d,
		     const struct gmem *m, uint64_t *total)
{
	if (d->len == 0)
		return VQ_ERR_ZERO_LEN;
	bool writable = d->flags & VQ_DESC_F_WRITE;
	if (!writable && c->nr > c->nr_readable)
		return VQ_ERR_ORDER;
	/* Each len < 2^32 and nr <= 32768: the 64-bit sum cannot wrap. */
	*total += d->len;
	if (*total > UINT32_MAX)
		return VQ_ERR_TOTAL_LEN;
	if (c->nr >= size)
		return VQ_ERR_TOO_LONG;
	if (c->nr >= c->cap)
		return VQ_ERR_CHAIN_CAP;
	void *hva = gmem_ptr(m, d->addr, d->len);
	if (!hva)
		return VQ_ERR_ADDR;
	c->buf[c->nr++] = (struct vq_buf){
		.gpa = d->addr, .hva = hva, .len = d->len, .writable = writable};
	if (writable) {
		c->writable_len += d->len;
	} else {
		c->nr_readable++;
		c->readable_len += d->len;
	}
	return 0;
}

/* Walks the chain at head: direct descriptors, optionally ending in one that
 * names an indirect table. seen bounds each table's walk by its entry count: a
 * walk that visits more descriptors than the table has went round a loop. */
static int chain_walk(struct vq *vq, struct vq_chain *c, uint16_t head)
{
	const uint8_t *table = vq->desc;
	uint32_t entries = vq->cfg.size, seen = 0, i = head;
	bool indirect = false;
	uint64_t total = 0;

	for (;;) {
		if (++seen > entries)
			return VQ_ERR_TOO_LONG;
		struct desc d = desc_read(table, i);
		if (d.flags & VQ_DESC_F_INDIRECT) {
			if (indirect)
				return VQ_ERR_NESTED;
			if (!vq->cfg.indirect || (d.flags & VQ_DESC_F_NEXT) ||
			    d.len == 0 || d.len % VQ_DESC_SIZE ||
			    d.len / VQ_DESC_SIZE > vq->cfg.size)
				return VQ_ERR_INDIRECT;
			table = gmem_ptr(vq->mem, d.addr, d.len);
			if (!table)
				return VQ_ERR_ADDR;
			entries = d.len / VQ_DESC_SIZE;
			seen = 0;
			i = 0;
			indirect = true;
			continue;
		}
		int r = chain_add(c, vq->cfg.size, &d, vq->mem, &total);
		if (r < 0)
			return r;
		if (!(d.flags & VQ_DESC_F_NEXT))
			return 0;
		if (d.next >= entries)
			return VQ_ERR_NEXT;
		i = d.next;
	}
}

int vq_pop(struct vq *vq, struct vq_chain *c)
{
	c->nr = c->nr_readable = 0;
	c->readable_len = c->writable_len = 0;
	if (vq->err) /* keep the first error in vq->err */
		return vq->err == VQ_ERR_CONFIG ? VQ_ERR_CONFIG : VQ_ERR_BROKEN;
	if (vq->last_avail == vq->shadow_avail) {
		int r = refresh_avail(vq);
		if (r < 0)
			return fail(vq, c, r);
		if (vq->last_avail == vq->shadow_avail)
			return VQ_EMPTY;
	}
	uint16_t size = vq->cfg.size;
	uint16_t head = load16(vq->avail + AVAIL_RING(vq->last_avail & (size - 1)),
			       __ATOMIC_RELAXED);
	if (head >= size)
		return fail(vq, c, VQ_ERR_HEAD);
	int r = chain_walk(vq, c, head);
	if (r < 0)
		return fail(vq, c, r);
	c->head = head;
	vq->last_avail++;
	vq->inflight++;
	return VQ_CHAIN;
}

int vq_push(struct vq *vq, uint16_t head, uint32_t written_len)
{
	/* A device pushing more than it popped would publish used entries the
	 * driver never made available; refuse it even on a broken queue. */
	if (!vq->used || head >= vq->cfg.size || vq->inflight == 0)
		return VQ_ERR_PUSH;
	uint8_t *e = vq->used + USED_RING(vq->used_idx & (vq->cfg.size - 1));
	store32(e, head);
	store32(e + 4, written_len);
	vq->used_idx++;
	/* Release: the element (and the data written into the buffers) are
	 * visible before the index that hands them to the driver. */
	store16(vq->used + USED_IDX, vq->used_idx, __ATOMIC_RELEASE);
	vq->inflight--;
	return 0;
}

bool vq_should_notify(struct vq *vq)
{
	if (!vq->avail)
		return false;
	/* Our used idx store must be visible before we read the driver's
	 * suppression fields, or both sides could decide not to act. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	if (old == now)
		return false;
	bool valid = vq->signalled_valid;
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (vq->cfg.event_idx) {
		/* After a restore we cannot know what the driver last saw. */
		if (!valid)
			return true;
		uint16_t ev = load16(vq->avail + AVAIL_RING(vq->cfg.size), __ATOMIC_RELAXED);
		/* Notify when the entry at index ev was written in this batch,
		 * i.e. ev lies in [old, now) modulo 2^16. */
		return (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
	}
	return !(load16(vq->avail, __ATOMIC_RELAXED) & VQ_AVAIL_F_NO_INTERRUPT);
}

int vq_chain_alloc(struct vq_chain *c, uint32_t cap)
{
	memset(c, 0, sizeof(*c));
	c->buf = calloc(cap ? cap : 1, sizeof(*c->buf));
	if (!c->buf)
		return -1;
	c->cap = cap;
	return 0;
}

void vq_chain_free(struct vq_chain *c)
{
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

/* Copies between a flat host buffer and buffers [from, to) of the chain, from
 * byte off of their concatenation: into the chain from src, or out of it to dst. */
static size_t chain_copy(const struct vq_chain *c, uint32_t from, uint32_t to, size_t off,
			 const uint8_t *src, uint8_t *dst, size_t len)
{
	size_t done = 0;
	for (uint32_t i = from; i < to && done < len; i++) {
		const struct vq_buf *b = &c->buf[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		size_t n = b->len - off;
		if (n > len - done)
			n = len - done;
		if (src)
			memcpy((uint8_t *)b->hva + off, src + done, n);
		else
			memcpy(dst + done, (const uint8_t *)b->hva + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t vq_chain_read(const struct vq_chain *c, size_t off, void *dst, size_t len)
{
	return chain_copy(c, 0, c->nr_readable, off, NULL, dst, len);
}

size_t vq_chain_write(const struct vq_chain *c, size_t off, const void *src, size_t len)
{
	return chain_copy(c, c->nr_readable, c->nr, off, src, NULL, len);
}

const char *vq_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case VQ_ERR_CONFIG: return "bad queue configuration";
	case VQ_ERR_BROKEN: return "queue broken by an earlier error";
	case VQ_ERR_AVAIL_IDX: return "more chains available than the queue holds";
	case VQ_ERR_HEAD: return "chain head out of range";
	case VQ_ERR_NEXT: return "next descriptor index out of range";
	case VQ_ERR_TOO_LONG: return "chain longer than the queue size (loop?)";
	case VQ_ERR_ADDR: return "buffer not entirely in guest RAM";
	case VQ_ERR_ZERO_LEN: return "zero-length buffer";
	case VQ_ERR_ORDER: return "device-readable buffer after a device-writable one";
	case VQ_ERR_TOTAL_LEN: return "chain longer than 2^32 - 1 bytes";
	case VQ_ERR_INDIRECT: return "bad indirect descriptor";
	case VQ_ERR_NESTED: return "nested indirect table";
	case VQ_ERR_CHAIN_CAP: return "chain has more buffers than the device accepts";
	case VQ_ERR_PUSH: return "push of a chain that is not in flight";
	}
	return "unknown virtqueue error";
}
