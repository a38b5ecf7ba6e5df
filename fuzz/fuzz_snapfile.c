/* libFuzzer target for the state-file container (src/snapshot/snapfile.c): what a
 * snapshot load or a migration's destination reads from a file or a socket it does
 * not trust.
 *
 * The input is a whole state file. A reader must either refuse it (one error, its
 * buffers freed) or index sections that lie inside it, back to back, filling the
 * body exactly; cursors must never read past a payload. The target also checks the
 * checks: an accepted file written again section by section through the writer
 * comes out byte for byte the same (nothing ignored, nothing made up); and half of
 * the time the input's checksum is made right first, so the layout checks behind
 * it get exercised too. A broken promise aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapfile.h"

static void reseal_crc(uint8_t *b, size_t len)
{
	if (len < SNAP_TRAILER_LEN)
		return;
	snap_put_le(b + len - SNAP_TRAILER_LEN, snap_crc64(0, b, len - SNAP_TRAILER_LEN), 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (size && (data[0] & 1))
		reseal_crc(buf, size);
	struct snap_reader r;
	struct kite_err err = {0};
	if (snapr_open_buf(&r, buf, size, "fuzz", &err) < 0) {
		if (!err.code || !err.msg[0] || r.buf || r.sec)
			abort();
		free(buf);
		return 0;
	}
	size_t off = SNAP_HEADER_LEN;
	struct snap_writer w;
	snapw_init(&w);
	for (uint32_t i = 0; i < r.nsec; i++) {
		const struct snap_index *s = &r.sec[i];
		if (s->off != off + 16 || s->len > r.len - s->off)
			abort();
		off = s->off + s->len;
		char tag[5] = {0};
		memcpy(tag, s->tag, 4);
		struct snap_cursor c;
		if (!snapr_find(&r, tag, s->inst, &c))
			abort();
		/* Read it all in odd-sized pieces, then once more past the end. */
		uint8_t piece[7];
		size_t got = 0;
		while (!c.bad && got < c.len) {
			size_t n = c.len - got < sizeof(piece) ? c.len - got : sizeof(piece);
			snapc_bytes(&c, piece, n);
			got += n;
		}
		if (!snapc_done(&c) && (c.len != 0 || c.bad))
			abort();
		snapc_u8(&c);
		if (!c.bad && c.len == c.off)
			abort();
		snapw_section(&w, tag, s->inst, r.buf + s->off, s->len);
	}
	if (off != r.len - SNAP_TRAILER_LEN)
		abort();
	const uint8_t *again;
	size_t again_len;
	/* Only the version the writer writes can come out the same. */
	if (r.version == SNAP_VERSION && snapw_seal(&w, &again, &again_len) == 0 &&
	    (again_len != r.len || memcmp(again, r.buf, r.len) != 0))
		abort();
	snapw_free(&w);
	snapr_free(&r);
	free(buf);
	return 0;
}
