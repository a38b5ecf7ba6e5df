/* libFuzzer target for virtio-blk's request checks (blk_parse, blk_data_iov in
 * src/virtio/blk.c).
 *
 * The input describes a popped chain as a hostile driver could make it (any
 * number and size of buffers, any split between readable and writable, any
 * header bytes) and the disk it goes to (capacity, read-only):
 *   u8 flags (bit 0 read-only, bit 1 a 64-bit capacity, else 16-bit)
 *   u16 or u64 capacity in sectors
 *   u8 buffers (mod 65), u8 readable ones (mod buffers + 1)
 *   u16 per buffer: length - 1 (mod 4096)
 *   the rest: the readable bytes, buffer after buffer (missing bytes are 0)
 * Each buffer is its own malloc of exactly its length, so ASan sees any step
 * past one.
 *
 * Besides ASan/UBSan, the target checks the checks: an independent model of
 * the rules (virtio 1.x 5.2.6 and kite's) must give the same status; an
 * accepted read or write lies inside the disk; the data iovecs cover exactly
 * the data (never the header, never the status byte) in the right direction;
 * nothing in the chain is written. A broken promise aborts. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk.h"
#include "virtio/virtqueue.h"

#define MAX_BUFS 64
#define CANARY 0xEE

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && in->left; i++, in->left--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_blk: broken promise: %s\n", what);
		abort();
	}
}

/* The rules, written out once more without sharing code with blk.c. */
static int model(const uint8_t *rd, uint32_t rlen, uint32_t wlen, uint64_t cap, bool ro,
		 uint32_t *data_len)
{
	*data_len = 0;
	if (rlen < 16)
		return VIRTIO_BLK_S_IOERR;
	uint32_t type = 0;
	uint64_t sector = 0;
	memcpy(&type, rd, 4);    /* little-endian host */
	memcpy(&sector, rd + 8, 8);
	uint32_t extra_out = rlen - 16, extra_in = wlen - 1;
	switch (type) {
	case 0: /* IN */
		if (extra_out || extra_in % 512)
			return VIRTIO_BLK_S_IOERR;
		if ((unsigned __int128)sector * 512 + extra_in > (unsigned __int128)cap * 512)
			return VIRTIO_BLK_S_IOERR;
		*data_len = extra_in;
		return VIRTIO_BLK_S_OK;
	case 1: /* OUT */
		if (extra_in || ro || extra_out % 512)
			return VIRTIO_BLK_S_IOERR;
		if ((unsigned __int128)sector * 512 + extra_out > (unsigned __int128)cap * 512)
			return VIRTIO_BLK_S_IOERR;
		*data_len = extra_out;
		return VIRTIO_BLK_S_OK;
	case 4: /* FLUSH */
		return extra_out || extra_in ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	case 8: /* GET_ID */
		if (extra_out || !extra_in)
			return VIRTIO_BLK_S_IOERR;
		*data_len = extra_in < 20 ? extra_in : 20;
		return VIRTIO_BLK_S_OK;
	}
	return VIRTIO_BLK_S_UNSUPP;
}

/* Which buffer holds p (NULL outside all) and where. */
static int owner(const struct vq_chain *c, const uint8_t *p, size_t len, uint32_t *at)
{
	for (uint32_t i = 0; i < c->nr; i++) {
		const uint8_t *b = c->buf[i].hva;
		if (p >= b && p < b + c->buf[i].len) {
			if ((size_t)(b + c->buf[i].len - p) < len)
				return -1; /* runs past the buffer */
			*at = (uint32_t)(p - b);
			return (int)i;
		}
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	uint8_t flags = (uint8_t)take(&in, 1);
	struct blk_limits lim = {.read_only = flags & 1};
	lim.capacity = take(&in, (flags & 2) ? 8 : 2);
	uint32_t n = (uint32_t)(take(&in, 1) % (MAX_BUFS + 1));
	uint32_t nr_readable = (uint32_t)(take(&in, 1) % (n + 1));

	struct vq_buf bufs[MAX_BUFS];
	struct vq_chain c = {.nr = n, .nr_readable = nr_readable, .cap = MAX_BUFS, .buf = bufs};
	uint32_t lens[MAX_BUFS];
	for (uint32_t i = 0; i < n; i++)
		lens[i] = (uint32_t)(take(&in, 2) % 4096) + 1;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t len = lens[i];
		bufs[i] = (struct vq_buf){.gpa = 0x100000ULL * (i + 1), .hva = malloc(len),
					  .len = len, .writable = i >= nr_readable};
		check(bufs[i].hva != NULL, "malloc");
		if (bufs[i].writable) {
			c.writable_len += len;
			memset(bufs[i].hva, CANARY, len);
		} else {
			c.readable_len += len;
			memset(bufs[i].hva, 0, len);
			size_t k = in.left < len ? in.left : len;
			memcpy(bufs[i].hva, in.p, k);
			in.p += k;
			in.left -= k;
		}
	}
	/* The readable bytes flat, for the model and the checks. */
	uint8_t *flat = malloc(c.readable_len + 16);
	check(flat != NULL, "malloc");
	memset(flat, 0, c.readable_len + 16);
	for (uint32_t i = 0, off = 0; i < nr_readable; off += bufs[i].len, i++)
		memcpy(flat + off, bufs[i].hva, bufs[i].len);

	struct blk_req r;
	int ret = blk_parse(&c, &lim, &r);
	if (getenv("FUZZ_BLK_TRACE")) /* for checking seeds */
		fprintf(stderr, "fuzz_blk: %u buffers, parse %d, type %u, status %u, data %u\n",
			n, ret, r.type, r.status, r.data_len);
	if (n == 0 || c.writable_len == 0) {
		check(ret == -1, "a chain without a writable byte is refused");
		goto out;
	}
	check(ret == 0, "a chain with a writable byte gets a status");
	const struct vq_buf *last = &bufs[n - 1];
	check(r.status_ptr == (uint8_t *)last->hva + last->len - 1, "status is the last byte");
	check(*r.status_ptr == CANARY, "parse writes nothing");

	uint32_t want_len;
	int want = model(flat, c.readable_len, c.writable_len, lim.capacity, lim.read_only,
			 &want_len);
	check(r.status == want, "status as the model says");
	if (r.status != VIRTIO_BLK_S_OK)
		goto out;
	check(r.data_len == want_len, "data length as the model says");
	if (r.type != VIRTIO_BLK_T_IN && r.type != VIRTIO_BLK_T_OUT)
		goto out;

	check(r.offset == r.sector * 512, "offset is the sector's");
	check((unsigned __int128)r.offset + r.data_len <= (unsigned __int128)lim.capacity * 512,
	      "inside the disk");
	check(r.type == VIRTIO_BLK_T_IN || !lim.read_only, "no write to a read-only disk");

	struct iovec iov[MAX_BUFS];
	unsigned niov = blk_data_iov(&c, &r, iov, MAX_BUFS);
	check(niov <= n, "at most one iovec per buffer");
	bool out_dir = r.type == VIRTIO_BLK_T_OUT;
	uint64_t total = 0;
	int prev = -1;
	for (unsigned i = 0; i < niov; i++) {
		uint32_t at;
		int b = owner(&c, iov[i].iov_base, iov[i].iov_len, &at);
		check(b >= 0, "iovec inside one buffer");
		check(iov[i].iov_len > 0, "no empty iovec");
		check(b > prev, "iovecs in chain order, one per buffer");
		prev = b;
		check(bufs[b].writable == !out_dir, "iovec in the data's direction");
		if (out_dir) {
			/* Its bytes are the readable data right after what came before. */
			uint64_t flat_off = 0;
			for (int k = 0; k < b; k++)
				flat_off += bufs[k].len;
			flat_off += at;
			check(flat_off == 16 + total, "write data follows the header");
		} else {
			uint64_t w_off = at;
			for (int k = (int)nr_readable; k < b; k++)
				w_off += bufs[k].len;
			check(w_off == total, "read data from the first writable byte");
			check(w_off + iov[i].iov_len <= c.writable_len - 1, "status byte left out");
		}
		total += iov[i].iov_len;
	}
	check(total == r.data_len, "iovecs cover the data");
out:
	for (uint32_t i = nr_readable; i < n; i++)
		for (uint32_t k = 0; k < bufs[i].len; k++)
			check(((uint8_t *)bufs[i].hva)[k] == CANARY, "nothing written");
	for (uint32_t i = 0; i < n; i++)
		free(bufs[i].hva);
	free(flat);
	return 0;
}
