/* The state file container (snapfile.h). */
#include "snapshot/snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- CRC-64/XZ ---- */

static uint64_t crc_table[256];

static void crc_init(void)
{
	const uint64_t poly = 0xc96c5795d7870f42ULL; /* ECMA-182, reflected */
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
		crc_table[i] = c;
	}
}

uint64_t snap_crc64(uint64_t crc, const void *p, size_t n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, crc_init);
	const uint8_t *b = p;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- little-endian helpers ---- */

void snap_put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t snap_get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ---- writer ---- */

void snapw_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->len = SNAP_HEADER_LEN; /* the header is filled in by seal */
}

void snapw_free(struct snap_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

static uint8_t *room(struct snap_writer *w, size_t n)
{
	if (w->oom || n > SNAP_MAX_FILE || w->len + n > SNAP_MAX_FILE) {
		w->oom = true;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			w->oom = true;
			return NULL;
		}
		if (!w->buf)
			memset(b, 0, SNAP_HEADER_LEN);
		w->buf = b;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	w->len += n;
	return p;
}

void snapw_begin(struct snap_writer *w, const char *tag, uint32_t inst)
{
	if (w->open) {
		w->oom = true; /* a bug: seal will refuse */
		return;
	}
	w->sec_start = w->len;
	uint8_t *p = room(w, 16);
	if (!p)
		return;
	memcpy(p, tag, 4);
	snap_put_le(p + 4, inst, 4);
	snap_put_le(p + 8, 0, 8);
	w->open = true;
}

void snapw_bytes(struct snap_writer *w, const void *src, size_t n)
{
	if (!w->open) {
		w->oom = true;
		return;
	}
	uint8_t *p = room(w, n);
	if (p && n)
		memcpy(p, src, n);
}

static void put_n(struct snap_writer *w, uint64_t v, unsigned n)
{
	uint8_t b[8];
	snap_put_le(b, v, n);
	snapw_bytes(w, b, n);
}

void snapw_u8(struct snap_writer *w, uint8_t v) { put_n(w, v, 1); }
void snapw_u16(struct snap_writer *w, uint16_t v) { put_n(w, v, 2); }
void snapw_u32(struct snap_writer *w, uint32_t v) { put_n(w, v, 4); }
void snapw_u64(struct snap_writer *w, uint64_t v) { put_n(w, v, 8); }

void snapw_end(struct snap_writer *w)
{
	if (!w->open) {
		w->oom = true;
		return;
	}
	w->open = false;
	if (w->oom)
		return;
	snap_put_le(w->buf + w->sec_start + 8, w->len - w->sec_start - 16, 8);
	w->nsec++;
}

void snapw_section(struct snap_writer *w, const char *tag, uint32_t inst, const void *p, size_t n)
{
	snapw_begin(w, tag, inst);
	snapw_bytes(w, p, n);
	snapw_end(w);
}

int snapw_seal(struct snap_writer *w, const uint8_t **out, size_t *len)
{
	/* room(w, 0) allocates the header's bytes when no section was written */
	if (w->open || w->oom || !room(w, 0))
		return -1;
	uint8_t *h = w->buf;
	memcpy(h, SNAP_MAGIC, 8);
	snap_put_le(h + 8, SNAP_VERSION, 4);
	snap_put_le(h + 12, 0, 4);
	snap_put_le(h + 16, w->nsec, 4);
	snap_put_le(h + 20, 0, 4);
	snap_put_le(h + 24, w->len - SNAP_HEADER_LEN, 8);
	size_t body_end = w->len;
	uint8_t *t = room(w, SNAP_TRAILER_LEN);
	if (!t)
		return -1;
	snap_put_le(t, snap_crc64(0, w->buf, body_end), 8);
	*out = w->buf;
	*len = w->len;
	w->len = body_end; /* sealing again rewrites the same trailer */
	return 0;
}

int snapw_write_file(struct snap_writer *w, const char *path, struct kite_err *err)
{
	const uint8_t *buf;
	size_t len;
	if (snapw_seal(w, &buf, &len) < 0)
		return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': out of memory building the state", path);
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': %s", path, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			unlink(tmp);
			return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': %s", path, strerror(e));
		}
		done += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': %s", path, strerror(e));
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return err_set(err, KITE_EXIT_ERROR, "snapshot '%s': %s", path, strerror(e));
	}
	return 0;
}

/* ---- reader ---- */

void snapr_free(struct snap_reader *r)
{
	free(r->buf);
	free(r->sec);
	memset(r, 0, sizeof(*r));
}

/* Checks r->buf/len and builds the index; on failure frees everything. */
static int parse(struct snap_reader *r, const char *what, struct kite_err *err)
{
	const uint8_t *b = r->buf;
	size_t len = r->len;
	int rc = -1;
	if (len < SNAP_HEADER_LEN + SNAP_TRAILER_LEN || memcmp(b, SNAP_MAGIC, 8) != 0) {
		err_set(err, KITE_EXIT_IMAGE, "%s: not a kite state file (no KITESNAP header)", what);
		goto out;
	}
	r->version = (uint32_t)snap_get_le(b + 8, 4);
	if (r->version == 0 || r->version > SNAP_VERSION) {
		err_set(err, KITE_EXIT_IMAGE, "%s: state file version %u; this kite reads version %u", what,
			r->version, SNAP_VERSION);
		goto out;
	}
	uint64_t body = snap_get_le(b + 24, 8);
	if (body != len - SNAP_HEADER_LEN - SNAP_TRAILER_LEN) {
		err_set(err, KITE_EXIT_IMAGE, "%s: truncated or extended (%zu bytes, the header says %llu)", what,
			len, (unsigned long long)(body + SNAP_HEADER_LEN + SNAP_TRAILER_LEN));
		goto out;
	}
	uint64_t want = snap_get_le(b + len - SNAP_TRAILER_LEN, 8);
	if (snap_crc64(0, b, len - SNAP_TRAILER_LEN) != want) {
		err_set(err, KITE_EXIT_IMAGE, "%s: checksum mismatch (the file is corrupt)", what);
		goto out;
	}
	if (snap_get_le(b + 12, 4) != 0 || snap_get_le(b + 20, 4) != 0) {
		err_set(err, KITE_EXIT_IMAGE, "%s: unknown header flags", what);
		goto out;
	}
	uint32_t n = (uint32_t)snap_get_le(b + 16, 4);
	if (n > body / 16) {
		err_set(err, KITE_EXIT_IMAGE, "%s: %u sections cannot fit in %llu bytes", what, n,
			(unsigned long long)body);
		goto out;
	}
	r->sec = calloc(n ? n : 1, sizeof(*r->sec));
	if (!r->sec) {
		err_set(err, KITE_EXIT_ERROR, "%s: out of memory", what);
		goto out;
	}
	size_t off = SNAP_HEADER_LEN, end = len - SNAP_TRAILER_LEN;
	for (uint32_t i = 0; i < n; i++) {
		if (end - off < 16) {
			err_set(err, KITE_EXIT_IMAGE, "%s: section %u runs past the end", what, i);
			goto out;
		}
		struct snap_index *s = &r->sec[i];
		memcpy(s->tag, b + off, 4);
		s->inst = (uint32_t)snap_get_le(b + off + 4, 4);
		uint64_t sl = snap_get_le(b + off + 8, 8);
		off += 16;
		if (sl > end - off) {
			err_set(err, KITE_EXIT_IMAGE, "%s: section %u runs past the end", what, i);
			goto out;
		}
		s->off = off;
		s->len = (size_t)sl;
		off += (size_t)sl;
	}
	if (off != end) {
		err_set(err, KITE_EXIT_IMAGE, "%s: %zu bytes after the last section", what, end - off);
		goto out;
	}
	r->nsec = n;
	rc = 0;
out:
	if (rc < 0)
		snapr_free(r);
	return rc;
}

int snapr_open_buf(struct snap_reader *r, const void *buf, size_t len, const char *what,
		   struct kite_err *err)
{
	memset(r, 0, sizeof(*r));
	if (len > SNAP_MAX_FILE)
		return err_set(err, KITE_EXIT_IMAGE, "%s: %zu bytes is too large for a state file", what, len);
	r->buf = malloc(len ? len : 1);
	if (!r->buf)
		return err_set(err, KITE_EXIT_ERROR, "%s: out of memory", what);
	memcpy(r->buf, buf, len);
	r->len = len;
	return parse(r, what, err);
}

int snapr_open_file(struct snap_reader *r, const char *path, struct kite_err *err)
{
	memset(r, 0, sizeof(*r));
	char what[PATH_MAX + 32];
	snprintf(what, sizeof(what), "snapshot '%s'", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, KITE_EXIT_IMAGE, "%s: %s", what, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "%s: not a regular file", what);
	}
	if ((uint64_t)st.st_size > SNAP_MAX_FILE) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "%s: %lld bytes is too large for a state file", what,
			       (long long)st.st_size);
	}
	size_t len = (size_t)st.st_size;
	r->buf = malloc(len ? len : 1);
	if (!r->buf) {
		close(fd);
		return err_set(err, KITE_EXIT_ERROR, "%s: out of memory", what);
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, r->buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	r->len = done; /* a file that shrank while read is caught by the length check */
	return parse(r, what, err);
}

bool snapr_find(const struct snap_reader *r, const char *tag, uint32_t inst, struct snap_cursor *c)
{
	for (uint32_t i = 0; i < r->nsec; i++) {
		const struct snap_index *s = &r->sec[i];
		if (memcmp(s->tag, tag, 4) == 0 && s->inst == inst) {
			c->p = r->buf + s->off;
			c->len = s->len;
			c->off = 0;
			c->bad = false;
			return true;
		}
	}
	memset(c, 0, sizeof(*c));
	c->bad = true;
	return false;
}

unsigned snapr_count(const struct snap_reader *r, const char *tag)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < r->nsec; i++)
		n += memcmp(r->sec[i].tag, tag, 4) == 0;
	return n;
}

void snapc_bytes(struct snap_cursor *c, void *dst, size_t n)
{
	if (c->bad || n > c->len - c->off) {
		c->bad = true;
		if (n)
			memset(dst, 0, n);
		return;
	}
	if (n)
		memcpy(dst, c->p + c->off, n);
	c->off += n;
}

static uint64_t get_n(struct snap_cursor *c, unsigned n)
{
	uint8_t b[8];
	snapc_bytes(c, b, n);
	return snap_get_le(b, n);
}

uint8_t snapc_u8(struct snap_cursor *c) { return (uint8_t)get_n(c, 1); }
uint16_t snapc_u16(struct snap_cursor *c) { return (uint16_t)get_n(c, 2); }
uint32_t snapc_u32(struct snap_cursor *c) { return (uint32_t)get_n(c, 4); }
uint64_t snapc_u64(struct snap_cursor *c) { return get_n(c, 8); }

bool snapc_done(const struct snap_cursor *c)
{
	return !c->bad && c->off == c->len;
}
