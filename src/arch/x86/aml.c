#include "arch/x86/aml.h"

#include <string.h>

#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE_OP 0x82
#define AML_ROOT_CHAR 0x5c

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->err || n > AML_MAX - a->len) {
		a->err = 1;
		return;
	}
	memcpy(a->b + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t v) { aml_bytes(a, &v, 1); }

/* PkgLength counts its own bytes plus what follows it. */
static void pkg_length(struct aml *a, size_t body)
{
	if (body + 1 <= 0x3f) {
		aml_byte(a, (uint8_t)(body + 1));
	} else if (body + 2 <= 0xfff) {
		size_t n = body + 2;
		aml_byte(a, (uint8_t)(0x40 | (n & 0xf)));
		aml_byte(a, (uint8_t)(n >> 4));
	} else {
		size_t n = body + 3;
		aml_byte(a, (uint8_t)(0x80 | (n & 0xf)));
		aml_byte(a, (uint8_t)(n >> 4));
		aml_byte(a, (uint8_t)(n >> 12));
	}
}

static void integer(struct aml *a, uint32_t v)
{
	if (v == 0 || v == 1) {
		aml_byte(a, (uint8_t)v); /* ZeroOp, OneOp */
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_byte(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_byte(a, (uint8_t)v);
		aml_byte(a, (uint8_t)(v >> 8));
	} else {
		uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
		aml_byte(a, AML_DWORD_PREFIX);
		aml_bytes(a, le, 4);
	}
}

static void name(struct aml *a, const char n[4])
{
	aml_byte(a, AML_NAME_OP);
	aml_bytes(a, n, 4);
}

void aml_name_int(struct aml *a, const char n[4], uint32_t v)
{
	name(a, n);
	integer(a, v);
}

uint32_t aml_eisaid(const char id[7])
{
	/* Three letters in 5 bits each, then four hex digits; stored big-endian. */
	uint32_t letters = ((uint32_t)(id[0] - 0x40) << 10) | ((uint32_t)(id[1] - 0x40) << 5) |
			   (uint32_t)(id[2] - 0x40);
	uint32_t product = 0;
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		product = (product << 4) | (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	uint32_t be = (letters << 16) | product;
	return ((be & 0xff) << 24) | ((be & 0xff00) << 8) | ((be >> 8) & 0xff00) | (be >> 24);
}

void aml_name_eisaid(struct aml *a, const char n[4], const char id[7])
{
	name(a, n);
	uint32_t v = aml_eisaid(id);
	uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	aml_byte(a, AML_DWORD_PREFIX);
	aml_bytes(a, le, 4);
}

void aml_name_buffer(struct aml *a, const char n[4], const uint8_t *p, size_t len)
{
	struct aml size = {.len = 0};
	integer(&size, (uint32_t)len);
	name(a, n);
	aml_byte(a, AML_BUFFER_OP);
	pkg_length(a, size.len + len);
	aml_bytes(a, size.b, size.len);
	aml_bytes(a, p, len);
}

void aml_name_pkg_bytes(struct aml *a, const char n[4], const uint8_t *v, uint8_t count)
{
	struct aml body = {.len = 0};
	aml_byte(&body, count);
	for (uint8_t i = 0; i < count; i++) {
		aml_byte(&body, AML_BYTE_PREFIX);
		aml_byte(&body, v[i]);
	}
	name(a, n);
	aml_byte(a, AML_PACKAGE_OP);
	pkg_length(a, body.len);
	aml_bytes(a, body.b, body.len);
}

void aml_device(struct aml *a, const char n[4], const struct aml *body)
{
	if (body->err)
		a->err = 1;
	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	pkg_length(a, 4 + body->len);
	aml_bytes(a, n, 4);
	aml_bytes(a, body->b, body->len);
}

void aml_scope(struct aml *a, const char n[4], const struct aml *body)
{
	if (body->err)
		a->err = 1;
	aml_byte(a, AML_SCOPE_OP);
	pkg_length(a, 5 + body->len);
	aml_byte(a, AML_ROOT_CHAR);
	aml_bytes(a, n, 4);
	aml_bytes(a, body->b, body->len);
}
