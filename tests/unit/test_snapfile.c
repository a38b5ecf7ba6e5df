/* The state file container: a round trip of sections and fields, the CRC-64/XZ
 * check value, and refusal of every corruption a reader must catch before it uses
 * a byte: no magic, a newer version, truncation at any length, any single flipped
 * bit, lengths that overrun, sections that do not fill the body; cursor reads past
 * a payload's end. */
#include "unit.h"

#include <stdio.h>
#include <unistd.h>

#include "snapshot/snapfile.h"

static void crc_check_value(void **state)
{
	(void)state;
	assert_true(snap_crc64(0, "123456789", 9) == 0x995dc9bbdf1939faULL);
	/* chained */
	uint64_t c = snap_crc64(0, "1234", 4);
	assert_true(snap_crc64(c, "56789", 5) == 0x995dc9bbdf1939faULL);
	assert_true(snap_crc64(0, "", 0) == 0);
}

static void build(struct snap_writer *w)
{
	snapw_init(w);
	snapw_begin(w, "VCPU", 0);
	snapw_u8(w, 0xab);
	snapw_u16(w, 0x1234);
	snapw_u32(w, 0xdeadbeef);
	snapw_u64(w, 0x0102030405060708ULL);
	snapw_end(w);
	snapw_section(w, "VCPU", 1, "hello", 5);
	snapw_section(w, "EMPT", 0, NULL, 0);
}

static void round_trip(void **state)
{
	(void)state;
	struct snap_writer w;
	build(&w);
	const uint8_t *buf;
	size_t len;
	assert_int_equal(snapw_seal(&w, &buf, &len), 0);
	assert_int_equal(len, SNAP_HEADER_LEN + 16 + 15 + 16 + 5 + 16 + SNAP_TRAILER_LEN);
	assert_memory_equal(buf, "KITESNAP", 8);
	struct snap_reader r;
	struct kite_err err = {0};
	assert_int_equal(snapr_open_buf(&r, buf, len, "test", &err), 0);
	assert_int_equal(r.version, SNAP_VERSION);
	assert_int_equal(r.nsec, 3);
	assert_int_equal(snapr_count(&r, "VCPU"), 2);
	struct snap_cursor c;
	assert_true(snapr_find(&r, "VCPU", 0, &c));
	assert_int_equal(snapc_u8(&c), 0xab);
	assert_int_equal(snapc_u16(&c), 0x1234);
	assert_int_equal(snapc_u32(&c), 0xdeadbeef);
	assert_true(snapc_u64(&c) == 0x0102030405060708ULL);
	assert_true(snapc_done(&c));
	assert_true(snapr_find(&r, "VCPU", 1, &c));
	char s[6] = {0};
	snapc_bytes(&c, s, 5);
	assert_string_equal(s, "hello");
	assert_true(snapc_done(&c));
	assert_true(snapr_find(&r, "EMPT", 0, &c));
	assert_true(snapc_done(&c));
	assert_false(snapr_find(&r, "VCPU", 2, &c));
	assert_false(snapr_find(&r, "NONE", 0, &c));
	snapr_free(&r);
	/* sealing twice gives the same bytes */
	const uint8_t *buf2;
	size_t len2;
	assert_int_equal(snapw_seal(&w, &buf2, &len2), 0);
	assert_int_equal(len2, len);
	snapw_free(&w);
}

static void cursor_overrun_is_sticky(void **state)
{
	(void)state;
	struct snap_writer w;
	build(&w);
	const uint8_t *buf;
	size_t len;
	assert_int_equal(snapw_seal(&w, &buf, &len), 0);
	struct snap_reader r;
	struct kite_err err = {0};
	assert_int_equal(snapr_open_buf(&r, buf, len, "test", &err), 0);
	struct snap_cursor c;
	assert_true(snapr_find(&r, "VCPU", 1, &c));
	assert_int_equal(snapc_u32(&c), 0x6c6c6568); /* "hell" */
	assert_int_equal(snapc_u16(&c), 0);          /* one byte left: refused */
	assert_true(c.bad);
	assert_int_equal(snapc_u8(&c), 0);           /* and stays refused */
	assert_false(snapc_done(&c));
	/* a section read short is not done either */
	assert_true(snapr_find(&r, "VCPU", 0, &c));
	snapc_u8(&c);
	assert_false(snapc_done(&c));
	snapr_free(&r);
	snapw_free(&w);
}

static void empty_file_round_trip(void **state)
{
	(void)state;
	struct snap_writer w;
	snapw_init(&w);
	const uint8_t *buf;
	size_t len;
	assert_int_equal(snapw_seal(&w, &buf, &len), 0);
	assert_int_equal(len, SNAP_HEADER_LEN + SNAP_TRAILER_LEN);
	struct snap_reader r;
	struct kite_err err = {0};
	assert_int_equal(snapr_open_buf(&r, buf, len, "test", &err), 0);
	assert_int_equal(r.nsec, 0);
	snapr_free(&r);
	snapw_free(&w);
}

static void misuse_fails_the_seal(void **state)
{
	(void)state;
	struct snap_writer w;
	const uint8_t *buf;
	size_t len;
	snapw_init(&w);
	snapw_begin(&w, "OPEN", 0);
	assert_int_equal(snapw_seal(&w, &buf, &len), -1); /* still open */
	snapw_free(&w);
	snapw_init(&w);
	snapw_u32(&w, 1); /* outside a section */
	assert_int_equal(snapw_seal(&w, &buf, &len), -1);
	snapw_free(&w);
}

static void expect_refused(const uint8_t *buf, size_t len, const char *needle)
{
	struct snap_reader r;
	struct kite_err err = {0};
	assert_int_equal(snapr_open_buf(&r, buf, len, "snapshot 'x'", &err), -1);
	assert_int_equal(err.code, KITE_EXIT_IMAGE);
	if (needle && !strstr(err.msg, needle))
		fail_msg("'%s' does not say '%s'", err.msg, needle);
	assert_null(r.buf);
	assert_null(r.sec);
}

static void corruptions_refused(void **state)
{
	(void)state;
	struct snap_writer w;
	build(&w);
	const uint8_t *sealed;
	size_t len;
	assert_int_equal(snapw_seal(&w, &sealed, &len), 0);
	uint8_t *b = malloc(len);
	/* every truncation */
	for (size_t n = 0; n < len; n++)
		expect_refused(sealed, n, NULL);
	/* every single flipped bit */
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(b, sealed, len);
			b[i] ^= (uint8_t)(1u << bit);
			expect_refused(b, len, NULL);
		}
	/* the messages name the fault */
	memcpy(b, sealed, len);
	b[0] = 'X';
	expect_refused(b, len, "not a kite state file");
	memcpy(b, sealed, len);
	b[len - 1] ^= 1;
	expect_refused(b, len, "checksum mismatch");
	expect_refused(sealed, len - 1, "truncated");
	free(b);
	snapw_free(&w);
}

/* A header and body that pass the checksum but lie about their layout. */
static void reseal(uint8_t *b, size_t len)
{
	uint64_t crc = snap_crc64(0, b, len - SNAP_TRAILER_LEN);
	for (int i = 0; i < 8; i++)
		b[len - SNAP_TRAILER_LEN + i] = (uint8_t)(crc >> (8 * i));
}

static void consistent_lies_refused(void **state)
{
	(void)state;
	struct snap_writer w;
	build(&w);
	const uint8_t *sealed;
	size_t len;
	assert_int_equal(snapw_seal(&w, &sealed, &len), 0);
	uint8_t *b = malloc(len);
	/* a newer version */
	memcpy(b, sealed, len);
	b[8] = SNAP_VERSION + 1;
	reseal(b, len);
	expect_refused(b, len, "this kite reads version");
	/* version 0 */
	memcpy(b, sealed, len);
	b[8] = 0;
	reseal(b, len);
	expect_refused(b, len, "version 0");
	/* a section longer than the body */
	memcpy(b, sealed, len);
	b[SNAP_HEADER_LEN + 8] = 0xff;
	reseal(b, len);
	expect_refused(b, len, "runs past the end");
	/* a section length near 2^64 */
	memcpy(b, sealed, len);
	memset(b + SNAP_HEADER_LEN + 8, 0xff, 8);
	reseal(b, len);
	expect_refused(b, len, "runs past the end");
	/* more sections than the body holds */
	memcpy(b, sealed, len);
	b[16] = 200;
	reseal(b, len);
	expect_refused(b, len, "cannot fit");
	/* fewer sections than the body holds */
	memcpy(b, sealed, len);
	b[16] = 2;
	reseal(b, len);
	expect_refused(b, len, "after the last section");
	/* flags */
	memcpy(b, sealed, len);
	b[12] = 1;
	reseal(b, len);
	expect_refused(b, len, "flags");
	free(b);
	snapw_free(&w);
}

static void file_round_trip(void **state)
{
	(void)state;
	char path[] = "/tmp/kite-snapfile-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct snap_writer w;
	build(&w);
	struct kite_err err = {0};
	assert_int_equal(snapw_write_file(&w, path, &err), 0);
	snapw_free(&w);
	struct snap_reader r;
	assert_int_equal(snapr_open_file(&r, path, &err), 0);
	assert_int_equal(r.nsec, 3);
	snapr_free(&r);
	/* cut short on disk */
	assert_int_equal(truncate(path, 40), 0);
	assert_int_equal(snapr_open_file(&r, path, &err), -1);
	assert_non_null(strstr(err.msg, path));
	unlink(path);
	struct kite_err e2 = {0};
	assert_int_equal(snapr_open_file(&r, path, &e2), -1);
	assert_int_equal(e2.code, KITE_EXIT_IMAGE);
	assert_non_null(strstr(e2.msg, "No such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc_check_value),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(cursor_overrun_is_sticky),
		cmocka_unit_test(empty_file_round_trip),
		cmocka_unit_test(misuse_fails_the_seal),
		cmocka_unit_test(corruptions_refused),
		cmocka_unit_test(consistent_lies_refused),
		cmocka_unit_test(file_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
