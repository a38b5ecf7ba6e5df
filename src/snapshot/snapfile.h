/* kite's state file: a versioned container of tagged sections, sealed by a
 * checksum. Used for snapshots (a file) and live migration (a buffer on the wire).
 *
 * Layout, all integers little-endian:
 *   header  "KITESNAP" | u32 version | u32 flags (0) | u32 sections | u32 reserved (0) | u64 body bytes
 *   body    sections, each: 4-byte tag | u32 instance | u64 length | payload
 *   trailer u64 CRC-64/XZ of header and body
 *
 * A reader checks the whole file before anything is used: magic, a version it knows,
 * lengths that add up exactly, the checksum. A payload is then read through a cursor
 * whose reads past the end fail (sticky), so a short or long section is refused, not
 * half-read. Writers build in memory and write the file once (temporary + rename). */
#ifndef KITE_SNAPFILE_H
#define KITE_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

#define SNAP_MAGIC "KITESNAP"
#define SNAP_VERSION 1u
#define SNAP_HEADER_LEN 32u
#define SNAP_TRAILER_LEN 8u
#define SNAP_MAX_FILE (256u << 20) /* a state file, not guest memory */

struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t sec_start; /* offset of the open section's header */
	bool open;
	bool oom;         /* an allocation failed: seal fails */
	uint32_t nsec;
};

void snapw_init(struct snap_writer *w);
void snapw_free(struct snap_writer *w);
/* Opens a section; tag is 4 characters ("CPU0" style names are not needed: the
 * instance tells copies apart, e.g. a vCPU index). */
void snapw_begin(struct snap_writer *w, const char *tag, uint32_t inst);
void snapw_u8(struct snap_writer *w, uint8_t v);
void snapw_u16(struct snap_writer *w, uint16_t v);
void snapw_u32(struct snap_writer *w, uint32_t v);
void snapw_u64(struct snap_writer *w, uint64_t v);
void snapw_bytes(struct snap_writer *w, const void *p, size_t n);
void snapw_end(struct snap_writer *w);
/* begin + bytes + end. */
void snapw_section(struct snap_writer *w, const char *tag, uint32_t inst, const void *p, size_t n);
/* Writes header and trailer around the sections; *out stays owned by w. -1 when
 * out of memory or a section is still open. */
int snapw_seal(struct snap_writer *w, const uint8_t **out, size_t *len);
/* Seals and writes to path (a temporary file beside it, fsync, rename). */
int snapw_write_file(struct snap_writer *w, const char *path, struct kite_err *err);

struct snap_index {
	char tag[4];
	uint32_t inst;
	size_t off, len; /* payload within buf */
};

struct snap_reader {
	uint8_t *buf;
	size_t len;
	uint32_t version;
	struct snap_index *sec;
	uint32_t nsec;
};

/* Checks and indexes a state file (what names it in errors). Errors are
 * KITE_EXIT_IMAGE and name the file and what is wrong with it. */
int snapr_open_file(struct snap_reader *r, const char *path, struct kite_err *err);
/* The same for bytes in memory (copied); what names them in errors. */
int snapr_open_buf(struct snap_reader *r, const void *buf, size_t len, const char *what,
		   struct kite_err *err);
void snapr_free(struct snap_reader *r);

struct snap_cursor {
	const uint8_t *p;
	size_t len, off;
	bool bad; /* a read went past the end */
};

/* The section (tag, inst): true and a cursor over its payload, or false. */
bool snapr_find(const struct snap_reader *r, const char *tag, uint32_t inst, struct snap_cursor *c);
/* How many sections carry this tag (instances 0..n-1 are not implied). */
unsigned snapr_count(const struct snap_reader *r, const char *tag);

uint8_t snapc_u8(struct snap_cursor *c);
uint16_t snapc_u16(struct snap_cursor *c);
uint32_t snapc_u32(struct snap_cursor *c);
uint64_t snapc_u64(struct snap_cursor *c);
/* Copies n bytes (zeroes dst when the payload is short: bad is then set). */
void snapc_bytes(struct snap_cursor *c, void *dst, size_t n);
/* Every byte read and none missing. */
bool snapc_done(const struct snap_cursor *c);

/* Little-endian integers of n (1..8) bytes, for the state file and the
 * migration stream. */
void snap_put_le(uint8_t *p, uint64_t v, unsigned n);
uint64_t snap_get_le(const uint8_t *p, unsigned n);

/* CRC-64/XZ (ECMA-182 polynomial, reflected, inverted): check value of
 * "123456789" is 0x995dc9bbdf1939fa. Chain by passing the previous result. */
uint64_t snap_crc64(uint64_t crc, const void *p, size_t n);

#endif
