#include "api/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Nesting is bounded: the contract is at most a few levels deep, a request
 * that is not must not recurse without limit. */
#define MAX_DEPTH 16

const struct schema *schema_find(const char *definition)
{
	for (const struct schema_entry *e = schema_table; e->name; e++)
		if (strcmp(e->name, definition) == 0)
			return e->schema;
	for (const struct schema_entry *e = schema_kite_table; e->name; e++)
		if (strcmp(e->name, definition) == 0)
			return e->schema;
	return NULL;
}

static int fail(char *msg, size_t len, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t len, const char *path, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (path[0])
		snprintf(msg, len, "field '%s': %s", path, what);
	else
		snprintf(msg, len, "%s", what);
	return -1;
}

static const char *type_name(enum schema_type t)
{
	switch (t) {
	case ST_OBJECT: return "an object";
	case ST_STRING: return "a string";
	case ST_INTEGER: return "an integer";
	case ST_NUMBER: return "a number";
	case ST_BOOLEAN: return "a boolean";
	case ST_ARRAY: return "an array";
	default: return "a value";
	}
}

static void join(char *out, size_t len, const char *path, const char *name)
{
	if (path[0])
		snprintf(out, len, "%s.%s", path, name);
	else
		snprintf(out, len, "%s", name);
}

static int check(const struct schema *s, const json_t *v, const char *path, int depth, char *msg,
		 size_t len)
{
	if (depth > MAX_DEPTH)
		return fail(msg, len, path, "nested too deeply");
	switch (s->type) {
	case ST_ANY:
		return 0;
	case ST_STRING:
		if (!json_is_string(v))
			return fail(msg, len, path, "expected %s", type_name(s->type));
		if (s->nenums) {
			const char *str = json_string_value(v);
			for (size_t i = 0; i < s->nenums; i++)
				if (strcmp(str, s->enums[i]) == 0)
					return 0;
			char allowed[200] = "";
			for (size_t i = 0; i < s->nenums; i++) {
				size_t used = strlen(allowed);
				snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "", s->enums[i]);
			}
			return fail(msg, len, path, "'%s' is not one of %s", str, allowed);
		}
		return 0;
	case ST_BOOLEAN:
		return json_is_boolean(v) ? 0 : fail(msg, len, path, "expected %s", type_name(s->type));
	case ST_NUMBER:
		return json_is_number(v) ? 0 : fail(msg, len, path, "expected %s", type_name(s->type));
	case ST_INTEGER: {
		if (!json_is_integer(v))
			return fail(msg, len, path, "expected %s", type_name(s->type));
		long long x = json_integer_value(v);
		if (s->has_min && x < s->min)
			return fail(msg, len, path, "%lld is below the minimum %lld", x, s->min);
		if (s->has_max && x > s->max)
			return fail(msg, len, path, "%lld is above the maximum %lld", x, s->max);
		return 0;
	}
	case ST_ARRAY: {
		if (!json_is_array(v))
			return fail(msg, len, path, "expected %s", type_name(s->type));
		size_t i;
		const json_t *item;
		json_array_foreach(v, i, item) {
			char sub[256];
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			if (s->items && check(s->items, item, sub, depth + 1, msg, len) < 0)
				return -1;
		}
		return 0;
	}
	case ST_OBJECT: {
		if (!json_is_object(v))
			return fail(msg, len, path, "expected %s", type_name(s->type));
		for (size_t i = 0; i < s->nprops; i++) {
			const struct schema_prop *p = &s->props[i];
			const json_t *m = json_object_get(v, p->name);
			char sub[256];
			join(sub, sizeof(sub), path, p->name);
			if (!m) {
				if (p->required)
					return fail(msg, len, sub, "missing required field");
				continue;
			}
			if (check(p->schema, m, sub, depth + 1, msg, len) < 0)
				return -1;
		}
		const char *key;
		const json_t *m;
		json_object_foreach((json_t *)v, key, m) {
			bool known = false;
			for (size_t i = 0; i < s->nprops && !known; i++)
				known = strcmp(key, s->props[i].name) == 0;
			if (known || s->addl_any)
				continue;
			char sub[256];
			join(sub, sizeof(sub), path, key);
			if (!s->addl)
				return fail(msg, len, sub, "unknown field");
			if (check(s->addl, m, sub, depth + 1, msg, len) < 0)
				return -1;
		}
		return 0;
	}
	}
	return 0;
}

int schema_validate(const struct schema *s, const json_t *v, char *msg, size_t msglen)
{
	return check(s, v, "", 0, msg, msglen);
}
