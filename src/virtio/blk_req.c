/* virtio-blk request checks: pure functions of a popped chain, apart from the
 * device so that the unit tests and the fuzz target (fuzz/fuzz_blk.c) take
 * them alone. The guest may change its buffers while we look: the header is
 * copied once, and nothing is read from the chain after that. */
#include <string.h>

#include "virtio/blk.h"

static uint8_t *chain_last_writable(const struct vq_chain *c)
{
	const struct vq_buf *b = &c->buf[c->nr - 1];
	return (uint8_t *)b->hva + b->len - 1;
}

/* Sectors [sector, sector + len/512) inside the image. */
static bool in_range(uint64_t sector, uint32_t len, uint64_t capacity)
{
	return sector <= capacity && len / BLK_SECTOR <= capacity - sector;
}

int blk_parse(const struct vq_chain *c, const struct blk_limits *lim, struct blk_req *r)
{
	memset(r, 0, sizeof(*r));
	if (c->nr == 0 || c->writable_len == 0 || c->nr_readable >= c->nr)
		return -1;
	r->status_ptr = chain_last_writable(c);
	r->status = VIRTIO_BLK_S_IOERR;
	if (c->readable_len < BLK_HDR_LEN)
		return 0;

	uint8_t hdr[BLK_HDR_LEN];
	vq_chain_read(c, 0, hdr, sizeof(hdr));
	r->type = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		  (uint32_t)hdr[3] << 24;
	for (int i = 7; i >= 0; i--)
		r->sector = r->sector << 8 | hdr[8 + i];

	/* The bytes besides the header and the status byte. */
	uint32_t out_data = c->readable_len - BLK_HDR_LEN;
	uint32_t in_data = c->writable_len - 1;

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool out = r->type == VIRTIO_BLK_T_OUT;
		/* Data goes one way only: a read has nothing after the header, a
		 * write nothing before the status. */
		if (out ? in_data != 0 : out_data != 0)
			return 0;
		if (out && lim->read_only)
			return 0;
		uint32_t len = out ? out_data : in_data;
		if (len % BLK_SECTOR || !in_range(r->sector, len, lim->capacity))
			return 0;
		r->data_len = len;
		r->offset = r->sector * BLK_SECTOR; /* <= capacity * 512: no overflow */
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (out_data || in_data)
			return 0;
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (out_data || in_data == 0)
			return 0;
		r->data_len = in_data < BLK_ID_BYTES ? in_data : BLK_ID_BYTES;
		break;
	default:
		r->status = VIRTIO_BLK_S_UNSUPP;
		return 0;
	}
	r->status = VIRTIO_BLK_S_OK;
	return 0;
}

unsigned blk_data_iov(const struct vq_chain *c, const struct blk_req *r, struct iovec *iov,
		      unsigned max)
{
	uint32_t from, to, skip;
	if (r->type == VIRTIO_BLK_T_OUT) {
		from = 0;
		to = c->nr_readable;
		skip = BLK_HDR_LEN;
	} else {
		from = c->nr_readable;
		to = c->nr;
		skip = 0;
	}
	uint32_t left = r->data_len;
	unsigned n = 0;
	for (uint32_t i = from; i < to && left && n < max; i++) {
		const struct vq_buf *b = &c->buf[i];
		if (skip >= b->len) {
			skip -= b->len;
			continue;
		}
		uint32_t len = b->len - skip;
		if (len > left)
			len = left;
		iov[n].iov_base = (uint8_t *)b->hva + skip;
		iov[n].iov_len = len;
		n++;
		left -= len;
		skip = 0;
	}
	return n;
}
