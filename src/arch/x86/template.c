/* Custom CPU templates (template.h, docs/cpu-templates.md). */
#include "arch/x86/template.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX

static const char *const reg_names[TREG_NR] = {"eax", "ebx", "ecx", "edx"};

static int failf(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the registers that hold features ---- */

enum { F_CHECK = 1, /* a template may not set a bit the host does not offer */
       F_AND = 2,   /* intersect: 1 only where every input has 1, 0 where any has 0 */
       F_MIN = 4 }; /* intersect: a highest leaf or subleaf, the smallest wins (so a
		     * guest does not look at leaves some hosts do not have) */

static const struct feature_reg {
	uint32_t leaf, subleaf;
	unsigned reg;
	unsigned how;
	/* Bits kite or KVM set themselves whatever the template says: never
	 * refused (HTT follows the vCPU count; OSXSAVE, APIC and OSPKE follow the
	 * guest's CR4 and APIC base at run time). */
	uint32_t managed;
} feature_regs[] = {
	{0x1, 0, TREG_ECX, F_CHECK | F_AND, 1u << 27},
	{0x1, 0, TREG_EDX, F_CHECK | F_AND, (1u << 28) | (1u << 9)},
	{0x7, 0, TREG_EBX, F_CHECK | F_AND, 0},
	{0x7, 0, TREG_ECX, F_CHECK | F_AND, 1u << 4},
	{0x7, 0, TREG_EDX, F_CHECK | F_AND, 0},
	{0x7, 1, TREG_EAX, F_CHECK | F_AND, 0},
	{0xd, 0, TREG_EAX, F_CHECK | F_AND, 0}, /* XSAVE state components (XCR0) */
	{0xd, 0, TREG_EDX, F_CHECK | F_AND, 0},
	{0xd, 1, TREG_EAX, F_CHECK | F_AND, 0},
	{0x80000001, 0, TREG_ECX, F_CHECK | F_AND, 0},
	{0x80000001, 0, TREG_EDX, F_CHECK | F_AND, 0},
	{0x80000008, 0, TREG_EBX, F_CHECK | F_AND, 0},
	{0x40000001, 0, TREG_EAX, F_CHECK | F_AND, 0}, /* KVM paravirt features */
	{0xa, 0, TREG_EAX, F_CHECK, 0},                 /* no PMU: kite offers none */
	{0x0, 0, TREG_EAX, F_MIN, 0},
	{0x7, 0, TREG_EAX, F_MIN, 0}, /* leaf 0x7's highest subleaf */
	{0x80000000, 0, TREG_EAX, F_MIN, 0},
};

static const struct feature_reg *feature_of(uint32_t leaf, uint32_t subleaf, unsigned reg)
{
	for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		const struct feature_reg *f = &feature_regs[i];
		if (f->leaf == leaf && f->subleaf == subleaf && f->reg == reg)
			return f;
	}
	return NULL;
}

static uint32_t *reg_ptr(struct kvm_cpuid_entry2 *e, unsigned reg)
{
	switch (reg) {
	case TREG_EAX:
		return &e->eax;
	case TREG_EBX:
		return &e->ebx;
	case TREG_ECX:
		return &e->ecx;
	default:
		return &e->edx;
	}
}

static uint32_t reg_get(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
	return *reg_ptr((struct kvm_cpuid_entry2 *)e, reg);
}

/* The entry CPUID(leaf, subleaf) reads, if any: an entry without the index flag
 * answers subleaf 0 only here (KVM would answer every subleaf with it, but a
 * template naming subleaf 5 of such a leaf expects a different entry). */
static struct kvm_cpuid_entry2 *entry_of(struct kvm_cpuid_entry2 *e, unsigned n, uint32_t leaf,
					 uint32_t subleaf, bool *unindexed)
{
	struct kvm_cpuid_entry2 *x = cpuid_find(e, n, leaf, subleaf);
	*unindexed = x && !(x->flags & IDX) && subleaf != 0;
	return *unindexed ? NULL : x;
}

/* ---- parsing ---- */

int tmpl_parse_u32(const char *s, uint32_t *out)
{
	unsigned base = 10;
	if (s[0] == '0' && s[1] == 'x') {
		base = 16;
		s += 2;
	} else if (s[0] == '0' && s[1] == 'b') {
		base = 2;
		s += 2;
	}
	if (!*s)
		return -1;
	uint64_t v = 0;
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (*s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (*s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		if (d >= base)
			return -1;
		v = v * base + d;
		if (v > UINT32_MAX)
			return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

int tmpl_parse_bitmap(const char *s, unsigned bits, uint64_t *mask, uint64_t *value, char *msg,
		      size_t len)
{
	if (strncmp(s, "0b", 2) != 0)
		return failf(msg, len, "expected \"0b\" and %u characters of 0, 1 or x", bits);
	uint64_t m = 0, v = 0;
	unsigned n = 0;
	for (const char *p = s + 2; *p; p++) {
		if (*p == '_')
			continue;
		if (*p != '0' && *p != '1' && *p != 'x') {
			if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
				return failf(msg, len, "character %u is not 0, 1, x or _", (unsigned)(p - s) + 1);
			return failf(msg, len, "character %u '%c' is not 0, 1, x or _", (unsigned)(p - s) + 1, *p);
		}
		if (++n > bits)
			break;
		m <<= 1;
		v <<= 1;
		if (*p != 'x') {
			m |= 1;
			v |= *p == '1';
		}
	}
	if (n != bits)
		return failf(msg, len, "%s%u bits where %u are needed", n > bits ? "more than " : "",
			     n > bits ? bits : n, bits);
	*mask = m;
	*value = v;
	return 0;
}

/* Values are quoted in messages only when they cannot break the one-line
 * error (a newline in a bitmap, say). */
static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || *s == '\'')
			return false;
	return true;
}

/* Members of an object outside `allowed` are refused (a typo would otherwise
 * silently leave a register alone). */
static int only_members(const json_t *o, const char *const *allowed, const char *where, char *msg,
			size_t len)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)o, key, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(key, *a) == 0;
		if (!ok)
			return failf(msg, len, "%s: unknown member '%s'", where, key);
	}
	return 0;
}

static int number_member(const json_t *o, const char *name, const char *where, uint32_t *out,
			 char *msg, size_t len)
{
	const json_t *v = json_object_get(o, name);
	if (!v)
		return failf(msg, len, "%s.%s is missing", where, name);
	if (!json_is_string(v))
		return failf(msg, len, "%s.%s must be a string such as \"0x1\"", where, name);
	const char *s = json_string_value(v);
	if (strlen(s) > 66 || tmpl_parse_u32(s, out) < 0) {
		if (!printable(s))
			return failf(msg, len, "%s.%s: expected a 32-bit number as \"0x\" hex, \"0b\" binary or decimal",
				     where, name);
		return failf(msg, len, "%s.%s '%.66s': expected a 32-bit number as \"0x\" hex, \"0b\" binary or decimal",
			     where, name, s);
	}
	return 0;
}

static int bitmap_member(const json_t *o, const char *where, unsigned bits, uint64_t *mask,
			 uint64_t *value, char *msg, size_t len)
{
	const json_t *v = json_object_get(o, "bitmap");
	if (!v)
		return failf(msg, len, "%s.bitmap is missing", where);
	if (!json_is_string(v))
		return failf(msg, len, "%s.bitmap must be a string", where);
	char why[128];
	const char *s = json_string_value(v);
	if (tmpl_parse_bitmap(s, bits, mask, value, why, sizeof(why)) < 0) {
		if (!printable(s))
			return failf(msg, len, "%s.bitmap: %s", where, why);
		return failf(msg, len, "%s.bitmap '%.80s%s': %s", where, s, strlen(s) > 80 ? "..." : "", why);
	}
	return 0;
}

static void merge32(struct tmpl_bits *b, uint32_t mask, uint32_t value)
{
	b->value = (b->value & ~mask) | (value & mask);
	b->mask |= mask;
}

static int parse_leaf(struct cpu_template *t, const json_t *lm, size_t i, char *msg, size_t len)
{
	static const char *const members[] = {"leaf", "subleaf", "flags", "modifiers", NULL};
	char where[64];
	snprintf(where, sizeof(where), "cpuid_modifiers[%zu]", i);
	if (!json_is_object(lm))
		return failf(msg, len, "%s must be an object", where);
	if (only_members(lm, members, where, msg, len) < 0)
		return -1;
	uint32_t leaf, subleaf;
	if (number_member(lm, "leaf", where, &leaf, msg, len) < 0 ||
	    number_member(lm, "subleaf", where, &subleaf, msg, len) < 0)
		return -1;
	const json_t *fl = json_object_get(lm, "flags");
	if (!fl)
		return failf(msg, len, "%s.flags is missing", where);
	if (!json_is_integer(fl) || (json_integer_value(fl) != 0 && json_integer_value(fl) != IDX))
		return failf(msg, len, "%s.flags: expected 0, or 1 for a leaf with subleaves (KVM_CPUID_FLAG_SIGNIFCANT_INDEX)",
			     where);
	uint32_t flags = (uint32_t)json_integer_value(fl);
	if (!(flags & IDX) && subleaf != 0)
		return failf(msg, len, "%s: subleaf 0x%x of leaf 0x%x needs flags 1 (a leaf with subleaves)", where,
			     subleaf, leaf);
	const json_t *mods = json_object_get(lm, "modifiers");
	if (!mods)
		return failf(msg, len, "%s.modifiers is missing", where);
	if (!json_is_array(mods))
		return failf(msg, len, "%s.modifiers must be an array", where);

	struct tmpl_cpuid *c = NULL;
	for (unsigned k = 0; k < t->nr_cpuid; k++)
		if (t->cpuid[k].leaf == leaf && t->cpuid[k].subleaf == subleaf)
			c = &t->cpuid[k];
	if (!c) {
		if (t->nr_cpuid >= TMPL_MAX_CPUID)
			return failf(msg, len, "cpuid_modifiers: more than %d leaves", TMPL_MAX_CPUID);
		c = &t->cpuid[t->nr_cpuid++];
		memset(c, 0, sizeof(*c));
		c->leaf = leaf;
		c->subleaf = subleaf;
	}
	c->flags = flags;

	size_t j;
	const json_t *m;
	json_array_foreach(mods, j, m) {
		static const char *const mmembers[] = {"register", "bitmap", NULL};
		char mwhere[96];
		snprintf(mwhere, sizeof(mwhere), "%s.modifiers[%zu]", where, j);
		if (!json_is_object(m))
			return failf(msg, len, "%s must be an object", mwhere);
		if (only_members(m, mmembers, mwhere, msg, len) < 0)
			return -1;
		const json_t *r = json_object_get(m, "register");
		if (!r)
			return failf(msg, len, "%s.register is missing", mwhere);
		const char *rs = json_string_value(r);
		unsigned reg = TREG_NR;
		for (unsigned k = 0; rs && k < TREG_NR; k++)
			if (strcmp(rs, reg_names[k]) == 0)
				reg = k;
		if (reg == TREG_NR)
			return failf(msg, len, "%s.register: expected eax, ebx, ecx or edx", mwhere);
		uint64_t mask, value;
		if (bitmap_member(m, mwhere, 32, &mask, &value, msg, len) < 0)
			return -1;
		merge32(&c->reg[reg], (uint32_t)mask, (uint32_t)value);
	}
	return 0;
}

static int parse_msr(struct cpu_template *t, const json_t *mm, size_t i, char *msg, size_t len)
{
	static const char *const members[] = {"addr", "bitmap", NULL};
	char where[64];
	snprintf(where, sizeof(where), "msr_modifiers[%zu]", i);
	if (!json_is_object(mm))
		return failf(msg, len, "%s must be an object", where);
	if (only_members(mm, members, where, msg, len) < 0)
		return -1;
	uint32_t addr;
	uint64_t mask, value;
	if (number_member(mm, "addr", where, &addr, msg, len) < 0 ||
	    bitmap_member(mm, where, 64, &mask, &value, msg, len) < 0)
		return -1;
	struct tmpl_msr *r = NULL;
	for (unsigned k = 0; k < t->nr_msr; k++)
		if (t->msr[k].addr == addr)
			r = &t->msr[k];
	if (!r) {
		if (t->nr_msr >= TMPL_MAX_MSR)
			return failf(msg, len, "msr_modifiers: more than %d MSRs", TMPL_MAX_MSR);
		r = &t->msr[t->nr_msr++];
		memset(r, 0, sizeof(*r));
		r->addr = addr;
	}
	r->value = (r->value & ~mask) | (value & mask);
	r->mask |= mask;
	return 0;
}

struct cpu_template *template_from_json(const json_t *j, char *msg, size_t len)
{
	static const char *const members[] = {"cpuid_modifiers", "msr_modifiers", "kvm_capabilities",
					      "reg_modifiers", "vcpu_features", NULL};
	if (!json_is_object(j)) {
		failf(msg, len, "a CPU template must be a JSON object");
		return NULL;
	}
	if (only_members(j, members, "the template", msg, len) < 0)
		return NULL;
	/* The aarch64 members and KVM capability checks: kite cannot honour them. */
	for (const char *const *k = members + 2; *k; k++) {
		const json_t *v = json_object_get(j, *k);
		if (v && !json_is_array(v)) {
			failf(msg, len, "%s must be an array", *k);
			return NULL;
		}
		if (json_array_size(v)) {
			failf(msg, len, "%s: not supported by kite (x86 CPUID and MSR modifiers only)", *k);
			return NULL;
		}
	}
	const json_t *cm = json_object_get(j, "cpuid_modifiers"), *mm = json_object_get(j, "msr_modifiers");
	if ((cm && !json_is_array(cm)) || (mm && !json_is_array(mm))) {
		failf(msg, len, "%s must be an array", cm && !json_is_array(cm) ? "cpuid_modifiers" : "msr_modifiers");
		return NULL;
	}
	struct cpu_template *t = calloc(1, sizeof(*t));
	if (!t) {
		failf(msg, len, "out of memory");
		return NULL;
	}
	size_t i;
	const json_t *v;
	json_array_foreach(cm, i, v) {
		if (parse_leaf(t, v, i, msg, len) < 0)
			goto fail;
	}
	json_array_foreach(mm, i, v) {
		if (parse_msr(t, v, i, msg, len) < 0)
			goto fail;
	}
	return t;
fail:
	free(t);
	return NULL;
}

struct cpu_template *template_load(const char *path, char *msg, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		failf(msg, len, "'%s': %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		failf(msg, len, "'%s': %s", path, strerror(EISDIR));
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	int read_err = ferror(f) ? errno : 0;
	fclose(f);
	if (!j) {
		if (read_err)
			failf(msg, len, "'%s': %s", path, strerror(read_err));
		else
			failf(msg, len, "'%s': invalid JSON at line %d, column %d: %s", path, je.line, je.column,
			      je.text);
		return NULL;
	}
	char why[300];
	struct cpu_template *t = template_from_json(j, why, sizeof(why));
	json_decref(j);
	if (!t)
		failf(msg, len, "'%s': %s", path, why);
	return t;
}

void template_free(struct cpu_template *t)
{
	free(t);
}

/* ---- printing ---- */

static json_t *bitmap_json(uint64_t mask, uint64_t value, unsigned bits)
{
	char s[2 + 64 + 1] = "0b";
	for (unsigned i = 0; i < bits; i++) {
		uint64_t b = 1ull << (bits - 1 - i);
		s[2 + i] = (mask & b) ? ((value & b) ? '1' : '0') : 'x';
	}
	s[2 + bits] = 0;
	return json_string(s);
}

static json_t *hex_json(uint32_t v)
{
	char s[16];
	snprintf(s, sizeof(s), "0x%" PRIx32, v);
	return json_string(s);
}

json_t *template_to_json(const struct cpu_template *t)
{
	json_t *cm = json_array(), *mm = json_array();
	for (unsigned i = 0; i < t->nr_cpuid; i++) {
		const struct tmpl_cpuid *c = &t->cpuid[i];
		json_t *mods = json_array();
		for (unsigned r = 0; r < TREG_NR; r++) {
			if (!c->reg[r].mask)
				continue;
			json_array_append_new(mods, json_pack("{s:s, s:o}", "register", reg_names[r], "bitmap",
							      bitmap_json(c->reg[r].mask, c->reg[r].value, 32)));
		}
		json_array_append_new(cm, json_pack("{s:o, s:o, s:I, s:o}", "leaf", hex_json(c->leaf), "subleaf",
						    hex_json(c->subleaf), "flags", (json_int_t)c->flags,
						    "modifiers", mods));
	}
	for (unsigned i = 0; i < t->nr_msr; i++) {
		const struct tmpl_msr *m = &t->msr[i];
		json_array_append_new(mm, json_pack("{s:o, s:o}", "addr", hex_json(m->addr), "bitmap",
						    bitmap_json(m->mask, m->value, 64)));
	}
	return json_pack("{s:o, s:o}", "cpuid_modifiers", cm, "msr_modifiers", mm);
}

struct cpu_template *template_from_cpuid(const struct kvm_cpuid_entry2 *e, unsigned n)
{
	struct cpu_template *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	for (unsigned i = 0; i < n && t->nr_cpuid < TMPL_MAX_CPUID; i++) {
		struct tmpl_cpuid *c = &t->cpuid[t->nr_cpuid++];
		c->leaf = e[i].function;
		c->flags = e[i].flags & IDX;
		c->subleaf = c->flags ? e[i].index : 0;
		for (unsigned r = 0; r < TREG_NR; r++) {
			c->reg[r].mask = UINT32_MAX;
			c->reg[r].value = reg_get(&e[i], r);
		}
	}
	return t;
}

/* ---- applying ---- */

int template_check(const struct cpu_template *t, const struct kvm_cpuid_entry2 *ref, unsigned n,
		   char *msg, size_t len)
{
	for (unsigned i = 0; i < t->nr_cpuid; i++) {
		const struct tmpl_cpuid *c = &t->cpuid[i];
		bool unindexed;
		const struct kvm_cpuid_entry2 *x =
			entry_of((struct kvm_cpuid_entry2 *)ref, n, c->leaf, c->subleaf, &unindexed);
		for (unsigned r = 0; r < TREG_NR; r++) {
			const struct feature_reg *f = feature_of(c->leaf, c->subleaf, r);
			if (!f || !(f->how & F_CHECK))
				continue;
			uint32_t want = c->reg[r].mask & c->reg[r].value & ~f->managed;
			uint32_t missing = want & ~(x ? reg_get(x, r) : 0);
			if (!missing)
				continue;
			unsigned bit = (unsigned)__builtin_ctz(missing), more = (unsigned)__builtin_popcount(missing) - 1;
			char extra[48] = "";
			if (more)
				snprintf(extra, sizeof(extra), " (and %u more bit%s)", more, more > 1 ? "s" : "");
			return failf(msg, len,
				     "the template sets CPUID leaf 0x%x subleaf 0x%x %s bit %u%s, which this host does not "
				     "offer to guests: a template the host cannot satisfy",
				     c->leaf, c->subleaf, reg_names[r], bit, extra);
		}
	}
	return 0;
}

int template_apply_cpuid(const struct cpu_template *t, struct kvm_cpuid_entry2 *e, unsigned *n,
			 unsigned max, char *msg, size_t len)
{
	for (unsigned i = 0; i < t->nr_cpuid; i++) {
		const struct tmpl_cpuid *c = &t->cpuid[i];
		bool unindexed;
		struct kvm_cpuid_entry2 *x = entry_of(e, *n, c->leaf, c->subleaf, &unindexed);
		if (unindexed)
			return failf(msg, len, "CPUID leaf 0x%x has no subleaves on this host: subleaf 0x%x cannot be set",
				     c->leaf, c->subleaf);
		if (!x) {
			if (*n >= max)
				return failf(msg, len, "too many CPUID leaves (at most %u)", max);
			x = &e[(*n)++];
			memset(x, 0, sizeof(*x));
			x->function = c->leaf;
			x->index = c->subleaf;
			x->flags = c->flags;
		}
		for (unsigned r = 0; r < TREG_NR; r++) {
			uint32_t *p = reg_ptr(x, r);
			*p = (*p & ~c->reg[r].mask) | c->reg[r].value;
		}
	}
	return 0;
}

int cpuid_build(struct kvm_cpuid_entry2 *e, unsigned *n, unsigned max, const struct cpuid_opts *o,
		const struct cpu_template *t, char *msg, size_t len)
{
	if (cpuid_normalize(e, n, max, o) < 0)
		return failf(msg, len, "no room for the KVM leaves in the CPUID table");
	if (!t)
		return 0;
	if (template_check(t, e, *n, msg, len) < 0 || template_apply_cpuid(t, e, n, max, msg, len) < 0)
		return -1;
	cpuid_set_topology(e, *n, o);
	return 0;
}

/* ---- intersection ---- */

static const struct tmpl_cpuid *leaf_in(const struct cpu_template *t, uint32_t leaf, uint32_t subleaf)
{
	for (unsigned i = 0; i < t->nr_cpuid; i++)
		if (t->cpuid[i].leaf == leaf && t->cpuid[i].subleaf == subleaf)
			return &t->cpuid[i];
	return NULL;
}

/* One register over all inputs; an input without the leaf leaves it all 'x'. */
static struct tmpl_bits meet(const struct cpu_template *const *in, unsigned n, uint32_t leaf,
			     uint32_t subleaf, unsigned r)
{
	const struct feature_reg *f = feature_of(leaf, subleaf, r);
	struct tmpl_bits b[n > 0 ? n : 1];
	for (unsigned i = 0; i < n; i++) {
		const struct tmpl_cpuid *c = leaf_in(in[i], leaf, subleaf);
		b[i] = c ? c->reg[r] : (struct tmpl_bits){0, 0};
	}
	struct tmpl_bits out = {0, 0};
	if (f && (f->how & F_AND)) {
		uint32_t ones = UINT32_MAX, zeros = 0;
		for (unsigned i = 0; i < n; i++) {
			ones &= b[i].mask & b[i].value;
			zeros |= b[i].mask & ~b[i].value;
		}
		out.mask = ones | zeros;
		out.value = ones;
		return out;
	}
	if (f && (f->how & F_MIN)) {
		bool all = true;
		uint32_t lo = UINT32_MAX;
		for (unsigned i = 0; i < n; i++) {
			all &= b[i].mask == UINT32_MAX;
			if (b[i].value < lo)
				lo = b[i].value;
		}
		if (all)
			return (struct tmpl_bits){UINT32_MAX, lo};
	}
	uint32_t mask = UINT32_MAX, diff = 0;
	for (unsigned i = 0; i < n; i++) {
		mask &= b[i].mask;
		diff |= b[i].value ^ b[0].value;
	}
	out.mask = mask & ~diff;
	out.value = b[0].value & out.mask;
	return out;
}

struct cpu_template *template_intersect(const struct cpu_template *const *in, unsigned n)
{
	if (n == 0)
		return NULL;
	struct cpu_template *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	/* Every leaf of any input, in the order the inputs name them. */
	for (unsigned i = 0; i < n; i++) {
		for (unsigned k = 0; k < in[i]->nr_cpuid; k++) {
			const struct tmpl_cpuid *c = &in[i]->cpuid[k];
			bool seen = false;
			for (unsigned p = 0; p < i && !seen; p++)
				seen = leaf_in(in[p], c->leaf, c->subleaf) != NULL;
			if (seen)
				continue;
			struct tmpl_cpuid out = {.leaf = c->leaf, .subleaf = c->subleaf, .flags = c->flags};
			bool any = false;
			for (unsigned r = 0; r < TREG_NR; r++) {
				out.reg[r] = meet(in, n, c->leaf, c->subleaf, r);
				any |= out.reg[r].mask != 0;
			}
			if (!any)
				continue;
			if (t->nr_cpuid >= TMPL_MAX_CPUID) {
				free(t);
				return NULL;
			}
			t->cpuid[t->nr_cpuid++] = out;
		}
	}
	/* MSRs: a bit fixed where every input fixes it to the same value. */
	for (unsigned k = 0; k < in[0]->nr_msr; k++) {
		struct tmpl_msr out = in[0]->msr[k];
		for (unsigned i = 1; i < n; i++) {
			const struct tmpl_msr *m = NULL;
			for (unsigned q = 0; q < in[i]->nr_msr && !m; q++)
				if (in[i]->msr[q].addr == out.addr)
					m = &in[i]->msr[q];
			if (!m) {
				out.mask = 0;
				break;
			}
			out.mask &= m->mask & ~(m->value ^ out.value);
		}
		out.value &= out.mask;
		if (out.mask)
			t->msr[t->nr_msr++] = out;
	}
	return t;
}

/* ---- this host ---- */

int template_host_cpuid(struct kvm_cpuid2 **out, char *msg, size_t len)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return failf(msg, len, "/dev/kvm: %s", strerror(errno));
	bool deadline = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	struct kvm_cpuid2 *c = NULL;
	for (unsigned n = 128; n <= 4096; n *= 2) {
		c = calloc(1, sizeof(*c) + (n + 4) * sizeof(c->entries[0]));
		if (!c) {
			close(kvm);
			return failf(msg, len, "out of memory");
		}
		c->nent = n;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		int e = errno;
		free(c);
		c = NULL;
		if (e != E2BIG) {
			close(kvm);
			return failf(msg, len, "KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
		}
	}
	close(kvm);
	if (!c)
		return failf(msg, len, "KVM_GET_SUPPORTED_CPUID: too many entries");
	unsigned n = c->nent;
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1, .tsc_deadline = deadline};
	if (cpuid_build(c->entries, &n, n + 4, &o, NULL, msg, len) < 0) {
		free(c);
		return -1;
	}
	c->nent = n;
	*out = c;
	return 0;
}

int template_check_host(const struct cpu_template *t, char *msg, size_t len)
{
	if (!t || t->nr_cpuid == 0)
		return 0;
	struct kvm_cpuid2 *c;
	char why[160];
	if (template_host_cpuid(&c, why, sizeof(why)) < 0) {
		log_debug("CPU template not checked against this host yet: %s", why);
		return 0;
	}
	int r = template_check(t, c->entries, c->nent, msg, len);
	free(c);
	return r;
}

/* PVM (the kvm_pvm module: KVM without hardware virtualisation) passes the
 * hardware's features in CPUID leaves 0x1 ECX/EDX, 0x7 and 0xd to guests,
 * whatever KVM_SET_CPUID2 was told: only the bits KVM_GET_SUPPORTED_CPUID
 * lists in 0x1 follow the table (seen with kvm_pvm on Linux 6.18). */
const char *template_host_caveat(void)
{
	if (access("/sys/module/kvm_pvm", F_OK) != 0)
		return NULL;
	return "this host's KVM is PVM (kvm_pvm), which passes the hardware's features in CPUID leaves "
	       "0x1 ECX/EDX, 0x7 and 0xd to guests";
}

bool template_touches_hw_leaves(const struct cpu_template *t)
{
	for (unsigned i = 0; t && i < t->nr_cpuid; i++) {
		const struct tmpl_cpuid *c = &t->cpuid[i];
		for (unsigned r = 0; r < TREG_NR; r++)
			if (c->reg[r].mask && (c->leaf == 0x7 || c->leaf == 0xd ||
					       (c->leaf == 0x1 && (r == TREG_ECX || r == TREG_EDX))))
				return true;
	}
	return false;
}

void template_warn_host(const struct cpu_template *t)
{
	const char *caveat = template_touches_hw_leaves(t) ? template_host_caveat() : NULL;
	if (caveat)
		log_warn("CPU template: %s: the template cannot take those away here", caveat);
}
