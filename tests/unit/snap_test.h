/* Snapshot round trips for the unit tests: a writer's sections sealed and read
 * back through the real container, and a section rewritten short or long, the
 * way a hostile state file would carry it. */
#ifndef KITE_SNAP_TEST_H
#define KITE_SNAP_TEST_H

#include "unit.h"

#include "snapshot/snapfile.h"

/* Seals w (freed) and opens the result as r: what a restore gets to read. */
static inline void snap_test_reopen(struct snap_writer *w, struct snap_reader *r)
{
	const uint8_t *buf;
	size_t len;
	struct kite_err err = {0};
	assert_int_equal(snapw_seal(w, &buf, &len), 0);
	assert_int_equal(snapr_open_buf(r, buf, len, "test", &err), 0);
	snapw_free(w);
}

/* A copy of r in which section (tag, inst) lost its last `cut` bytes (cut > 0)
 * or gained -cut zero bytes (cut < 0); other sections unchanged. */
static inline void snap_test_resize(const struct snap_reader *r, const char *tag, uint32_t inst,
				    long cut, struct snap_reader *out)
{
	struct snap_writer w;
	snapw_init(&w);
	for (uint32_t i = 0; i < r->nsec; i++) {
		const struct snap_index *s = &r->sec[i];
		char t[5] = {0};
		memcpy(t, s->tag, 4);
		size_t len = s->len;
		snapw_begin(&w, t, s->inst);
		bool target = memcmp(s->tag, tag, 4) == 0 && s->inst == inst;
		if (target && cut > 0) {
			assert_true((size_t)cut <= len);
			len -= (size_t)cut;
		}
		snapw_bytes(&w, r->buf + s->off, len);
		if (target)
			for (long k = 0; k < -cut; k++)
				snapw_u8(&w, 0);
		snapw_end(&w);
	}
	snap_test_reopen(&w, out);
}

/* The payload of section (tag, inst), for tests that patch a field. */
static inline uint8_t *snap_test_payload(struct snap_reader *r, const char *tag, uint32_t inst,
					 size_t *len)
{
	for (uint32_t i = 0; i < r->nsec; i++)
		if (memcmp(r->sec[i].tag, tag, 4) == 0 && r->sec[i].inst == inst) {
			*len = r->sec[i].len;
			return r->buf + r->sec[i].off;
		}
	fail_msg("no section %.4s/%u", tag, inst);
	return NULL;
}

#endif
