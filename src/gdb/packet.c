#include "gdb/packet.h"

#include <string.h>

enum { RX_IDLE, RX_DATA, RX_SUM1, RX_SUM2 };

void gdb_rx_init(struct gdb_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->state = RX_IDLE;
}

int gdb_hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void start_packet(struct gdb_rx *rx)
{
	rx->state = RX_DATA;
	rx->sum = 0;
	rx->escape = false;
	rx->overflow = false;
	rx->len = 0;
	rx->buf[0] = 0;
}

enum gdb_rx_event gdb_rx_feed(struct gdb_rx *rx, uint8_t c)
{
	switch (rx->state) {
	case RX_IDLE:
		switch (c) {
		case '$':
			start_packet(rx);
			return GDB_RX_NONE;
		case 0x03:
			return GDB_RX_INTERRUPT;
		case '+':
			return GDB_RX_ACK;
		case '-':
			return GDB_RX_NAK;
		default:
			return GDB_RX_NONE; /* line noise between packets */
		}
	case RX_DATA:
		if (c == '#') {
			rx->state = RX_SUM1;
			return GDB_RX_NONE;
		}
		if (c == '$') { /* gdb gave up on the last packet and starts over */
			start_packet(rx);
			return GDB_RX_NONE;
		}
		rx->sum = (uint8_t)(rx->sum + c);
		if (rx->escape) {
			c ^= 0x20;
			rx->escape = false;
		} else if (c == '}') {
			rx->escape = true;
			return GDB_RX_NONE;
		}
		if (rx->len < GDB_PACKET_MAX)
			rx->buf[rx->len++] = (char)c;
		else
			rx->overflow = true;
		return GDB_RX_NONE;
	case RX_SUM1: {
		int v = gdb_hex_val(c);
		if (v < 0) {
			rx->state = RX_IDLE;
			return GDB_RX_BAD_SUM;
		}
		rx->sum_hi = (uint8_t)v;
		rx->state = RX_SUM2;
		return GDB_RX_NONE;
	}
	case RX_SUM2: {
		int v = gdb_hex_val(c);
		rx->state = RX_IDLE;
		rx->buf[rx->len] = 0;
		if (v < 0 || (uint8_t)(rx->sum_hi << 4 | v) != rx->sum)
			return GDB_RX_BAD_SUM;
		if (rx->overflow || rx->escape)
			return GDB_RX_MALFORMED;
		return GDB_RX_PACKET;
	}
	default:
		rx->state = RX_IDLE;
		return GDB_RX_NONE;
	}
}

int gdb_frame(char *out, size_t cap, const void *payload, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = payload;
	size_t o = 0;
	uint8_t sum = 0;
	if (cap < 4)
		return -1;
	out[o++] = '$';
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		bool esc = c == '$' || c == '#' || c == '}' || c == '*';
		/* room for this byte (two when escaped) and the "#xx" trailer */
		if (o + (esc ? 2 : 1) + 3 > cap)
			return -1;
		if (esc) {
			out[o++] = '}';
			sum = (uint8_t)(sum + '}');
			c ^= 0x20;
		}
		out[o++] = (char)c;
		sum = (uint8_t)(sum + c);
	}
	out[o++] = '#';
	out[o++] = hex[sum >> 4];
	out[o++] = hex[sum & 0xf];
	return (int)o;
}

int gdb_parse_hex(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	unsigned n = 0;
	for (; s < end; s++, n++) {
		int d = gdb_hex_val((unsigned char)*s);
		if (d < 0)
			break;
		if (n == 16)
			return -1;
		x = x << 4 | (uint64_t)d;
	}
	if (n == 0)
		return -1;
	*p = s;
	*v = x;
	return 0;
}

int gdb_hex_decode(const char *hex, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = gdb_hex_val((unsigned char)hex[2 * i]);
		int lo = gdb_hex_val((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void gdb_hex_encode(const void *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = in;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
}
