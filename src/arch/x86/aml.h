/* A minimal AML (ACPI Machine Language) writer for kite's DSDT: names, packages,
 * devices, scopes and resource templates. Bounded buffers; overflow sets err. */
#ifndef KITE_AML_H
#define KITE_AML_H

#include <stddef.h>
#include <stdint.h>

#define AML_MAX 2048

struct aml {
	uint8_t b[AML_MAX];
	size_t len;
	int err;
};

void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t v);
/* Name (NAME, Integer) with the smallest integer encoding. */
void aml_name_int(struct aml *a, const char name[4], uint32_t v);
/* Name (_HID, EisaId ("PNP0501")). */
void aml_name_eisaid(struct aml *a, const char name[4], const char id[7]);
/* Name (NAME, Buffer () { bytes }), used for _CRS resource templates. */
void aml_name_buffer(struct aml *a, const char name[4], const uint8_t *p, size_t n);
/* Name (NAME, Package () { byte constants }). */
void aml_name_pkg_bytes(struct aml *a, const char name[4], const uint8_t *v, uint8_t n);
/* Device (NAME) { body } and Scope (\NAME) { body }. */
void aml_device(struct aml *a, const char name[4], const struct aml *body);
void aml_scope(struct aml *a, const char name[4], const struct aml *body);
/* The compressed 32-bit EISA id, as AML stores it. */
uint32_t aml_eisaid(const char id[7]);

#endif
