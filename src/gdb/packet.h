/* The GDB remote serial protocol's framing, pure and bounded.
 *
 * A packet is '$' payload '#' and two hex digits of checksum (the sum of the raw
 * payload bytes mod 256). Inside the payload '}' escapes the next byte (xor 0x20).
 * Outside a packet, 0x03 is an interrupt request and '+'/'-' acknowledge the last
 * packet sent. The receiver takes the connection's bytes one at a time into a fixed
 * buffer; nothing here allocates, and no input can make it read or write past its
 * buffer. */
#ifndef KITE_GDB_PACKET_H
#define KITE_GDB_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest payload accepted and sent (decoded bytes). Advertised to gdb as
 * PacketSize, so gdb sizes its m/M/X requests to fit. */
#define GDB_PACKET_MAX 4096

enum gdb_rx_event {
	GDB_RX_NONE,      /* byte consumed, nothing complete yet */
	GDB_RX_PACKET,    /* a whole packet with a good checksum: rx->buf, rx->len */
	GDB_RX_BAD_SUM,   /* checksum mismatch or non-hex checksum: answer '-' */
	GDB_RX_MALFORMED, /* good checksum but too long or ending in '}': answer E01 */
	GDB_RX_INTERRUPT, /* 0x03 outside a packet */
	GDB_RX_ACK,       /* '+' outside a packet */
	GDB_RX_NAK,       /* '-' outside a packet: resend the last packet */
};

struct gdb_rx {
	int state;
	uint8_t sum;      /* running sum of the raw payload bytes */
	uint8_t sum_hi;   /* first checksum digit */
	bool escape;      /* the previous raw byte was '}' */
	bool overflow;    /* more than GDB_PACKET_MAX decoded bytes */
	size_t len;
	char buf[GDB_PACKET_MAX + 1]; /* decoded payload, NUL-terminated (binary data may hold NULs) */
};

void gdb_rx_init(struct gdb_rx *rx);
enum gdb_rx_event gdb_rx_feed(struct gdb_rx *rx, uint8_t c);

/* Frames len payload bytes as "$...#cs" into out (cap bytes), escaping '$', '#',
 * '}' and '*'. Returns the frame's length, or -1 when it does not fit. */
int gdb_frame(char *out, size_t cap, const void *payload, size_t len);

/* Value of a hex digit, or -1. */
int gdb_hex_val(int c);
/* Parses 1 to 16 hex digits at *p (stops at end or the first non-digit) into *v
 * and advances *p. -1 when there is no digit or more than 16. */
int gdb_parse_hex(const char **p, const char *end, uint64_t *v);
/* Decodes 2*n hex digits into n bytes. -1 on a non-hex digit. */
int gdb_hex_decode(const char *hex, size_t n, uint8_t *out);
/* Encodes n bytes as 2*n lowercase hex digits (no NUL). */
void gdb_hex_encode(const void *in, size_t n, char *out);

#endif
