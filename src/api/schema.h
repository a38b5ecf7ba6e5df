/* JSON validation against the API contract (Firecracker's definitions, turned
 * into tables by tools/gen-api-schema.py). Objects reject unknown fields, as
 * Firecracker does; every failure is one sentence naming the field. */
#ifndef KITE_SCHEMA_H
#define KITE_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum schema_type { ST_OBJECT, ST_STRING, ST_INTEGER, ST_NUMBER, ST_BOOLEAN, ST_ARRAY, ST_ANY };

struct schema;

struct schema_prop {
	const char *name;
	const struct schema *schema;
	bool required;
};

struct schema {
	const char *name;
	enum schema_type type;
	const struct schema_prop *props;
	size_t nprops;
	bool addl_any;             /* object: any extra member allowed */
	const struct schema *addl; /* object: extra members must match this */
	const struct schema *items;
	const char *const *enums;
	size_t nenums;
	bool has_min, has_max;
	long long min, max;
};

struct schema_entry {
	const char *name;
	const struct schema *schema;
};

extern const struct schema_entry schema_table[];
/* kite's own routes (schema_kite.c), searched after the contract's. */
extern const struct schema_entry schema_kite_table[];

const struct schema *schema_find(const char *definition);
/* 0 when v matches; -1 with a message like "machine-config: field 'vcpu_count':
 * expected an integer" in msg. */
int schema_validate(const struct schema *s, const json_t *v, char *msg, size_t msglen);

#endif
