/* The gdb stub's packet layer: framing, checksums, escapes, bounds, hex. Every
 * input comes from the network, so every malformed shape has a test. */
#include "unit.h"

#include <stdio.h>

#include "gdb/packet.h"

static struct gdb_rx rx;

/* Feeds a whole byte string; returns the last non-NONE event (NONE if none) and
 * counts how many events were not NONE. */
static enum gdb_rx_event feed(const void *data, size_t n, int *events)
{
	const uint8_t *p = data;
	enum gdb_rx_event last = GDB_RX_NONE;
	int count = 0;
	for (size_t i = 0; i < n; i++) {
		enum gdb_rx_event e = gdb_rx_feed(&rx, p[i]);
		if (e != GDB_RX_NONE) {
			last = e;
			count++;
		}
	}
	if (events)
		*events = count;
	return last;
}

static enum gdb_rx_event feed_str(const char *s) { return feed(s, strlen(s), NULL); }

static void framed(char *out, size_t cap, const char *payload)
{
	unsigned sum = 0;
	for (const char *p = payload; *p; p++)
		sum += (uint8_t)*p;
	snprintf(out, cap, "$%s#%02x", payload, sum & 0xff);
}

static int setup(void **state)
{
	(void)state;
	gdb_rx_init(&rx);
	return 0;
}

static void good_packet(void **state)
{
	(void)state;
	int n;
	assert_int_equal(feed("$qC#b4", 6, &n), GDB_RX_PACKET);
	assert_int_equal(n, 1); /* nothing before the last byte */
	assert_int_equal(rx.len, 2);
	assert_string_equal(rx.buf, "qC");
	/* upper-case checksum digits */
	assert_int_equal(feed_str("$qC#B4"), GDB_RX_PACKET);
	/* the empty packet */
	assert_int_equal(feed_str("$#00"), GDB_RX_PACKET);
	assert_int_equal(rx.len, 0);
	assert_string_equal(rx.buf, "");
}

static void bad_checksums(void **state)
{
	(void)state;
	assert_int_equal(feed_str("$qC#b5"), GDB_RX_BAD_SUM);
	assert_int_equal(feed_str("$qC#x4"), GDB_RX_BAD_SUM); /* non-hex first digit */
	assert_int_equal(feed_str("$qC#bx"), GDB_RX_BAD_SUM); /* non-hex second digit */
	assert_int_equal(feed_str("$qC#"), GDB_RX_NONE);      /* incomplete: waits */
	assert_int_equal(feed_str("b4"), GDB_RX_PACKET);      /* ... and completes */
	/* after an error the receiver is back between packets */
	assert_int_equal(feed_str("$qC#00"), GDB_RX_BAD_SUM);
	assert_int_equal(feed_str("$qC#b4"), GDB_RX_PACKET);
}

static void between_packets(void **state)
{
	(void)state;
	assert_int_equal(gdb_rx_feed(&rx, 0x03), GDB_RX_INTERRUPT);
	assert_int_equal(gdb_rx_feed(&rx, '+'), GDB_RX_ACK);
	assert_int_equal(gdb_rx_feed(&rx, '-'), GDB_RX_NAK);
	int n;
	static const uint8_t noise[] = {'x', 0, 0xff, '#', '0', '0', '}', '\n', 0x80};
	assert_int_equal(feed(noise, sizeof(noise), &n), GDB_RX_NONE);
	assert_int_equal(n, 0);
	assert_int_equal(feed_str("$qC#b4"), GDB_RX_PACKET);
}

static void interrupt_inside_a_packet_is_data(void **state)
{
	(void)state;
	char buf[32];
	framed(buf, sizeof(buf), "X1,1:\x03");
	int n;
	assert_int_equal(feed(buf, strlen(buf), &n), GDB_RX_PACKET);
	assert_int_equal(n, 1);
	assert_int_equal(rx.len, 6);
	assert_int_equal(rx.buf[5], 0x03);
}

static void escapes(void **state)
{
	(void)state;
	/* '}' then byte ^ 0x20; the checksum covers the raw (escaped) bytes */
	static const char raw[] = "X0,4:}\x03}\x04}]}\x0a";
	char buf[64];
	framed(buf, sizeof(buf), raw);
	assert_int_equal(feed_str(buf), GDB_RX_PACKET);
	assert_int_equal(rx.len, 9);
	assert_memory_equal(rx.buf, "X0,4:#$}*", 9);
	/* a packet ending in an escape is malformed, however good its checksum */
	framed(buf, sizeof(buf), "m0,1}");
	assert_int_equal(feed_str(buf), GDB_RX_MALFORMED);
	assert_int_equal(feed_str("$qC#b4"), GDB_RX_PACKET);
	/* an escaped '#' or '$' does not end or restart the packet */
	framed(buf, sizeof(buf), "a}\x03}\x04" "b");
	assert_int_equal(feed_str(buf), GDB_RX_PACKET);
	assert_string_equal(rx.buf, "a#$b");
}

static void restart_on_dollar(void **state)
{
	(void)state;
	int n;
	/* gdb gave up on a packet and sends a new one: the first is dropped */
	assert_int_equal(feed("$m0,4$qC#b4", 11, &n), GDB_RX_PACKET);
	assert_int_equal(n, 1);
	assert_string_equal(rx.buf, "qC");
}

static void bounded(void **state)
{
	(void)state;
	/* exactly GDB_PACKET_MAX bytes fit */
	char *big = malloc(GDB_PACKET_MAX + 16);
	assert_non_null(big);
	memset(big, 'a', GDB_PACKET_MAX);
	big[GDB_PACKET_MAX] = 0;
	char *frame = malloc(GDB_PACKET_MAX + 32);
	assert_non_null(frame);
	framed(frame, GDB_PACKET_MAX + 32, big);
	assert_int_equal(feed_str(frame), GDB_RX_PACKET);
	assert_int_equal(rx.len, GDB_PACKET_MAX);
	assert_int_equal(rx.buf[GDB_PACKET_MAX], 0);
	/* one more is malformed (not a checksum error: resending would not help) */
	big[GDB_PACKET_MAX] = 'a';
	big[GDB_PACKET_MAX + 1] = 0;
	framed(frame, GDB_PACKET_MAX + 32, big);
	assert_int_equal(feed_str(frame), GDB_RX_MALFORMED);
	assert_int_equal(rx.len, GDB_PACKET_MAX);
	/* a huge one, then a normal one */
	for (int i = 0; i < 100000; i++)
		assert_int_equal(gdb_rx_feed(&rx, i ? 'z' : '$'), GDB_RX_NONE);
	assert_int_equal(feed_str("#00"), GDB_RX_BAD_SUM);
	assert_int_equal(feed_str("$qC#b4"), GDB_RX_PACKET);
	free(big);
	free(frame);
}

static void frame_escapes_and_sums(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(gdb_frame(out, sizeof(out), "OK", 2), 6);
	assert_memory_equal(out, "$OK#9a", 6);
	assert_int_equal(gdb_frame(out, sizeof(out), "", 0), 4);
	assert_memory_equal(out, "$#00", 4);
	/* '$' '#' '}' '*' are escaped; the checksum is over what is sent */
	int n = gdb_frame(out, sizeof(out), "a#$}*b", 6);
	assert_int_equal(n, 1 + 10 + 3);
	assert_memory_equal(out, "$a}\x03}\x04}]}\x0a" "b#", 12);
	unsigned sum = 0;
	for (int i = 1; i < 11; i++)
		sum += (uint8_t)out[i];
	char want[3];
	snprintf(want, sizeof(want), "%02x", sum & 0xff);
	assert_memory_equal(out + 12, want, 2);
}

static void frame_capacity(void **state)
{
	(void)state;
	char out[8];
	assert_int_equal(gdb_frame(out, 3, "", 0), -1);
	assert_int_equal(gdb_frame(out, 4, "", 0), 4);
	assert_int_equal(gdb_frame(out, 8, "abcd", 4), 8);  /* exact fit */
	assert_int_equal(gdb_frame(out, 7, "abcd", 4), -1);
	assert_int_equal(gdb_frame(out, 8, "abc#", 4), -1); /* the escape needs one more */
}

static void frame_then_receive_every_byte(void **state)
{
	(void)state;
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	char out[600];
	int n = gdb_frame(out, sizeof(out), all, sizeof(all));
	assert_true(n > 0);
	int events;
	assert_int_equal(feed(out, (size_t)n, &events), GDB_RX_PACKET);
	assert_int_equal(events, 1);
	assert_int_equal(rx.len, 256);
	assert_memory_equal(rx.buf, all, 256);
}

static void parse_hex(void **state)
{
	(void)state;
	uint64_t v;
	const char *s = "1aF,", *p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 4, &v), 0);
	assert_int_equal(v, 0x1af);
	assert_ptr_equal(p, s + 3);
	s = "ffffffffffffffff";
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 16, &v), 0);
	assert_true(v == UINT64_MAX);
	s = "10000000000000000"; /* 17 digits: would overflow */
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 17, &v), -1);
	assert_ptr_equal(p, s);
	s = ",1";
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 2, &v), -1);
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s, &v), -1); /* nothing left */
	s = "12";
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 1, &v), 0); /* stops at end, not at NUL */
	assert_int_equal(v, 1);
	s = "-1";
	p = s;
	assert_int_equal(gdb_parse_hex(&p, s + 2, &v), -1);
}

static void hex_bytes(void **state)
{
	(void)state;
	uint8_t b[4];
	assert_int_equal(gdb_hex_decode("00fFa5", 3, b), 0);
	assert_memory_equal(b, "\x00\xff\xa5", 3);
	assert_int_equal(gdb_hex_decode("0g", 1, b), -1);
	assert_int_equal(gdb_hex_decode("g0", 1, b), -1);
	assert_int_equal(gdb_hex_decode(" 1", 1, b), -1);
	char out[8];
	gdb_hex_encode("\x01\xab\xff", 3, out);
	assert_memory_equal(out, "01abff", 6);
	assert_int_equal(gdb_hex_val('a'), 10);
	assert_int_equal(gdb_hex_val('G'), -1);
	assert_int_equal(gdb_hex_val(0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(good_packet, setup),
		cmocka_unit_test_setup(bad_checksums, setup),
		cmocka_unit_test_setup(between_packets, setup),
		cmocka_unit_test_setup(interrupt_inside_a_packet_is_data, setup),
		cmocka_unit_test_setup(escapes, setup),
		cmocka_unit_test_setup(restart_on_dollar, setup),
		cmocka_unit_test_setup(bounded, setup),
		cmocka_unit_test(frame_escapes_and_sums),
		cmocka_unit_test(frame_capacity),
		cmocka_unit_test_setup(frame_then_receive_every_byte, setup),
		cmocka_unit_test(parse_hex),
		cmocka_unit_test(hex_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
