/* Custom CPU templates: bitmaps and numbers, strict parsing, applying them on a
 * fake host's normalised CPUID, refusing what the host cannot satisfy, dumps, and
 * the intersection of hand-written templates (issue 5, test 4). */
#include "unit.h"

#include <stdio.h>
#include <unistd.h>

#include "arch/x86/template.h"

#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX

#define L1_ECX_VMX (1u << 5)
#define L1_ECX_AES (1u << 25)
#define L1_ECX_OSXSAVE (1u << 27)
#define L1_ECX_HYPERVISOR (1u << 31)
#define L1_EDX_HTT (1u << 28)
#define L7_EBX_FSGSBASE (1u << 0)
#define L7_EBX_AVX512F (1u << 16)
#define X1_ECX_SVM (1u << 2)

/* A host's KVM_GET_SUPPORTED_CPUID: AES and FSGSBASE, no AVX-512, VMX and SVM
 * (which kite hides), a PMU (which kite hides). */
static const struct kvm_cpuid_entry2 host[] = {
	{.function = 0x0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69},
	{.function = 0x1, .eax = 0x000906ea, .ebx = 0x00100800, .ecx = 0x76fa3203 | L1_ECX_AES | L1_ECX_VMX,
	 .edx = 0xbfebfbff},
	{.function = 0x4, .index = 0, .flags = IDX, .eax = 0x121, .ebx = 0x01c0003f, .ecx = 0x3f},
	{.function = 0x4, .index = 1, .flags = IDX},
	{.function = 0x7, .index = 0, .flags = IDX, .eax = 1, .ebx = 0x029c6fbf, .ecx = 0x40000000,
	 .edx = 0xbc000400},
	{.function = 0x7, .index = 1, .flags = IDX, .eax = 0x10},
	{.function = 0xa, .eax = 0x07300404, .edx = 0x603},
	{.function = 0xb, .index = 0, .flags = IDX, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 7},
	{.function = 0xb, .index = 1, .flags = IDX, .eax = 4, .ebx = 8, .ecx = 0x201, .edx = 7},
	{.function = 0xd, .index = 0, .flags = IDX, .eax = 0x7, .ebx = 0x340, .ecx = 0x340},
	{.function = 0xd, .index = 1, .flags = IDX, .eax = 0xf},
	{.function = 0x40000001, .eax = 0x01007afb},
	{.function = 0x80000000, .eax = 0x80000008},
	{.function = 0x80000001, .ecx = 0x121 | X1_ECX_SVM, .edx = 0x2c100800},
	{.function = 0x80000002, .eax = 0x65746e49},
	{.function = 0x80000008, .eax = 0x3027, .ebx = 0x200, .ecx = 0xf0ff},
};
#define NHOST (sizeof(host) / sizeof(host[0]))

struct table {
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	unsigned n;
};

static void host_table(struct table *t)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->e, host, sizeof(host));
	t->n = NHOST;
}

static const struct cpuid_opts one_of_four = {.vcpu_id = 1, .nr_vcpus = 4, .tsc_deadline = true};

/* Normalised for vCPU 1 of 4, then the template: 0, or -1 with msg. */
static int build(struct table *t, const struct cpu_template *tmpl, char *msg, size_t len)
{
	host_table(t);
	return cpuid_build(t->e, &t->n, CPUID_MAX_ENTRIES, &one_of_four, tmpl, msg, len);
}

static struct kvm_cpuid_entry2 *leaf(struct table *t, uint32_t fn, uint32_t idx)
{
	struct kvm_cpuid_entry2 *x = cpuid_find(t->e, t->n, fn, idx);
	assert_non_null(x);
	return x;
}

static struct cpu_template *parse(const char *text, char *msg, size_t len)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		fail_msg("bad test JSON at %d:%d: %s", je.line, je.column, je.text);
	struct cpu_template *t = template_from_json(j, msg, len);
	json_decref(j);
	return t;
}

static struct cpu_template *parse_ok(const char *text)
{
	char msg[300] = "";
	struct cpu_template *t = parse(text, msg, sizeof(msg));
	if (!t)
		fail_msg("template refused: %s", msg);
	return t;
}

/* ---- bitmaps and numbers ---- */

static void bitmap_valid(void **state)
{
	(void)state;
	char msg[128];
	uint64_t m, v;
	assert_int_equal(tmpl_parse_bitmap("0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxx0x1", 32, &m, &v, msg, sizeof(msg)), 0);
	assert_int_equal(m, 0x80000005u);
	assert_int_equal(v, 0x80000001u);
	assert_int_equal(tmpl_parse_bitmap("0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 32, &m, &v, msg, sizeof(msg)), 0);
	assert_int_equal(m, 0);
	assert_int_equal(v, 0);
	/* '_' separates groups and does not count. */
	assert_int_equal(tmpl_parse_bitmap("0b11111111_00000000_xxxxxxxx_0000_1010", 32, &m, &v, msg, sizeof(msg)), 0);
	assert_int_equal(m, 0xffff00ffu);
	assert_int_equal(v, 0xff00000au);
	char s64[2 + 64 + 1] = "0b";
	memset(s64 + 2, '1', 64);
	s64[2 + 64] = 0;
	s64[2] = '0';  /* bit 63 */
	s64[65] = 'x'; /* bit 0 */
	assert_int_equal(tmpl_parse_bitmap(s64, 64, &m, &v, msg, sizeof(msg)), 0);
	assert_true(m == ~1ull);
	assert_true(v == 0x7ffffffffffffffeull);
}

static void bitmap_wrong_length(void **state)
{
	(void)state;
	char msg[128];
	uint64_t m = 7, v = 7;
	assert_int_equal(tmpl_parse_bitmap("0b111111111111111111111111111111", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "30 bits where 32 are needed"));
	assert_int_equal(tmpl_parse_bitmap("0b1111111111111111111111111111111111", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "more than 32 bits"));
	assert_int_equal(tmpl_parse_bitmap("0b", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "0 bits where 32"));
	assert_int_equal(tmpl_parse_bitmap("0b____", 32, &m, &v, msg, sizeof(msg)), -1);
	/* A 32-bit bitmap where an MSR needs 64. */
	assert_int_equal(tmpl_parse_bitmap("0b00000000000000000000000000000001", 64, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "32 bits where 64 are needed"));
	/* Nothing written on failure. */
	assert_int_equal(m, 7);
	assert_int_equal(v, 7);
}

static void bitmap_bad_characters(void **state)
{
	(void)state;
	char msg[128];
	uint64_t m, v;
	assert_int_equal(tmpl_parse_bitmap("00000000000000000000000000000001", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "expected \"0b\""));
	assert_int_equal(tmpl_parse_bitmap("0x00000001", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_int_equal(tmpl_parse_bitmap("0b0000000000000000000000000000000X", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "character 34 'X'"));
	assert_int_equal(tmpl_parse_bitmap("0b2000000000000000000000000000000x", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "character 3 '2'"));
	assert_int_equal(tmpl_parse_bitmap("0b0000 0000000000000000000000000000", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_int_equal(tmpl_parse_bitmap("0b000000000000000000000000000000\n0", 32, &m, &v, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "character 33 is not"));
	assert_int_equal(tmpl_parse_bitmap("", 32, &m, &v, msg, sizeof(msg)), -1);
}

static void numbers(void **state)
{
	(void)state;
	uint32_t v;
	assert_int_equal(tmpl_parse_u32("0x80000001", &v), 0);
	assert_int_equal(v, 0x80000001u);
	assert_int_equal(tmpl_parse_u32("0xABcd", &v), 0);
	assert_int_equal(v, 0xabcd);
	assert_int_equal(tmpl_parse_u32("0b100001010", &v), 0);
	assert_int_equal(v, 0x10a);
	assert_int_equal(tmpl_parse_u32("266", &v), 0);
	assert_int_equal(v, 266);
	assert_int_equal(tmpl_parse_u32("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(tmpl_parse_u32("0xffffffff", &v), 0);
	assert_int_equal(v, UINT32_MAX);
	static const char *const bad[] = {"", "0x", "0b", "0x100000000", "4294967296", "-1", "+1", "0X1",
					  "0b102", "12a", "0x1g", " 1", "1 "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 99;
		if (tmpl_parse_u32(bad[i], &v) == 0)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(v, 99);
	}
}

/* ---- parsing templates ---- */

static void parse_valid_and_merged(void **state)
{
	(void)state;
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": ["
		" {\"leaf\": \"0x7\", \"subleaf\": \"0b0\", \"flags\": 1, \"modifiers\": ["
		"   {\"register\": \"ebx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0\"}]},"
		" {\"leaf\": \"1\", \"subleaf\": \"0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"ecx\", \"bitmap\": \"0b0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},"
		"   {\"register\": \"ecx\", \"bitmap\": \"0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}]},"
		" {\"leaf\": \"0x7\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": ["
		"   {\"register\": \"ebx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1x\"}]},"
		" {\"leaf\": \"0x80000002\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}],"
		" \"msr_modifiers\": ["
		" {\"addr\": \"0x10a\", \"bitmap\": \"0b" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx01\"},"
		" {\"addr\": \"266\", \"bitmap\": \"0b1" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}],"
		" \"kvm_capabilities\": [], \"reg_modifiers\": [], \"vcpu_features\": []}");
	/* The same leaf twice is one entry, the later modifier winning where both fix a bit. */
	assert_int_equal(t->nr_cpuid, 3);
	assert_int_equal(t->cpuid[0].leaf, 0x7);
	assert_int_equal(t->cpuid[0].flags, IDX);
	assert_int_equal(t->cpuid[0].reg[TREG_EBX].mask, 0x3);
	assert_int_equal(t->cpuid[0].reg[TREG_EBX].value, 0x2);
	assert_int_equal(t->cpuid[1].leaf, 0x1);
	assert_int_equal(t->cpuid[1].reg[TREG_ECX].mask, 0x80000001u);
	assert_int_equal(t->cpuid[1].reg[TREG_ECX].value, 0x80000001u);
	assert_int_equal(t->cpuid[1].reg[TREG_EAX].mask, 0);
	assert_int_equal(t->cpuid[2].leaf, 0x80000002u);
	/* 0x10a and 266 are the same MSR. */
	assert_int_equal(t->nr_msr, 1);
	assert_int_equal(t->msr[0].addr, 0x10a);
	assert_true(t->msr[0].mask == 0x8000000000000003ull);
	assert_true(t->msr[0].value == 0x8000000000000001ull);
	template_free(t);

	/* Empty is a template that changes nothing. */
	t = parse_ok("{}");
	assert_int_equal(t->nr_cpuid + t->nr_msr, 0);
	template_free(t);
}

#define BM32 "\"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\""
#define BM64 "\"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\""
#define LEAF(body) "{\"cpuid_modifiers\": [" body "]}"
#define MOD(reg, bm) "{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"register\": " reg ", \"bitmap\": " bm "}]}"

static void parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json, *msg;
	} cases[] = {
		{"[]", "must be a JSON object"},
		{"{\"cpuid_modifier\": []}", "unknown member 'cpuid_modifier'"},
		{"{\"cpuid_modifiers\": {}}", "cpuid_modifiers must be an array"},
		{"{\"msr_modifiers\": 3}", "msr_modifiers must be an array"},
		{"{\"reg_modifiers\": [{\"addr\": \"0x0\", \"bitmap\": \"0b1\"}]}", "reg_modifiers: not supported by kite"},
		{"{\"vcpu_features\": [{}]}", "vcpu_features: not supported"},
		{"{\"kvm_capabilities\": [\"171\"]}", "kvm_capabilities: not supported"},
		{LEAF("3"), "cpuid_modifiers[0] must be an object"},
		{LEAF(MOD("\"ekx\"", BM32)), "cpuid_modifiers[0].modifiers[0].register: expected eax, ebx, ecx or edx"},
		{LEAF(MOD("1", BM32)), "modifiers[0].register: expected eax"},
		{LEAF(MOD("\"eax\"", "\"0b1\"")), "cpuid_modifiers[0].modifiers[0].bitmap '0b1': 1 bits where 32 are needed"},
		{LEAF(MOD("\"eax\"", BM64)), "more than 32 bits"},
		{LEAF(MOD("\"eax\"", "\"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy\"")), "character 34 'y'"},
		{LEAF(MOD("\"eax\"", "5")), "bitmap must be a string"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"register\": \"eax\"}]}"),
		 "modifiers[0].bitmap is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"bitmap\": " BM32 "}]}"),
		 "modifiers[0].register is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"register\": \"eax\", \"bitmap\": " BM32 ", \"mask\": 1}]}"),
		 "modifiers[0]: unknown member 'mask'"},
		{LEAF("{\"leaf\": 1, \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}"), "leaf must be a string such as"},
		{LEAF("{\"leaf\": \"0xg\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}"),
		 "cpuid_modifiers[0].leaf '0xg': expected a 32-bit number"},
		{LEAF("{\"leaf\": \"0x100000000\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}"), "32-bit number"},
		{LEAF("{\"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}"), "cpuid_modifiers[0].leaf is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"flags\": 0, \"modifiers\": []}"), "subleaf is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"modifiers\": []}"), "flags is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0}"), "modifiers is missing"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": {}}"), "modifiers must be an array"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 2, \"modifiers\": []}"), "flags: expected 0, or 1"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": \"1\", \"modifiers\": []}"), "flags: expected 0"},
		{LEAF("{\"leaf\": \"0x7\", \"subleaf\": \"0x1\", \"flags\": 0, \"modifiers\": []}"),
		 "subleaf 0x1 of leaf 0x7 needs flags 1"},
		{LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [], \"extra\": 1}"),
		 "cpuid_modifiers[0]: unknown member 'extra'"},
		{"{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": " BM32 "}]}",
		 "msr_modifiers[0].bitmap '0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1': 32 bits where 64 are needed"},
		{"{\"msr_modifiers\": [{\"addr\": \"0jj0\", \"bitmap\": " BM64 "}]}", "msr_modifiers[0].addr '0jj0'"},
		{"{\"msr_modifiers\": [{\"bitmap\": " BM64 "}]}", "msr_modifiers[0].addr is missing"},
		{"{\"msr_modifiers\": [{\"addr\": \"0x10a\"}]}", "msr_modifiers[0].bitmap is missing"},
		{"{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": " BM64 ", \"x\": 0}]}", "unknown member 'x'"},
		/* Values that would break the one-line message are not quoted. */
		{LEAF(MOD("\"eax\"", "\"0b0000\\n0000\"")), "cpuid_modifiers[0].modifiers[0].bitmap: character 7 is not"},
		{LEAF("{\"leaf\": \"0x1\\n\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}"),
		 "cpuid_modifiers[0].leaf: expected a 32-bit number"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char msg[300] = "";
		struct cpu_template *t = parse(cases[i].json, msg, sizeof(msg));
		if (t)
			fail_msg("accepted: %s", cases[i].json);
		if (!strstr(msg, cases[i].msg))
			fail_msg("%s\n  said:     %s\n  expected: %s", cases[i].json, msg, cases[i].msg);
		assert_null(strchr(msg, '\n'));
	}
}

static void too_many_leaves(void **state)
{
	(void)state;
	size_t cap = 64 + (TMPL_MAX_CPUID + 1) * 80;
	char *s = malloc(cap), *p = s;
	p += sprintf(p, "{\"cpuid_modifiers\": [");
	for (unsigned i = 0; i <= TMPL_MAX_CPUID; i++)
		p += sprintf(p, "%s{\"leaf\": \"0x%x\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}",
			     i ? "," : "", 0x100 + i);
	sprintf(p, "]}");
	char msg[300];
	assert_null(parse(s, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "more than 256 leaves"));
	free(s);
}

static void json_round_trip(void **state)
{
	(void)state;
	const char *text =
		"{\"cpuid_modifiers\": [{\"leaf\": \"0x7\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": ["
		"{\"register\": \"ebx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx10\"},"
		"{\"register\": \"edx\", \"bitmap\": \"0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0\"}]}],"
		" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
		"\"0b0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}]}";
	struct cpu_template *t = parse_ok(text);
	json_t *out = template_to_json(t);
	json_t *want = json_loads(text, 0, NULL);
	if (!json_equal(out, want)) {
		char *s = json_dumps(out, 0);
		fail_msg("round trip gave %s", s);
	}
	json_decref(out);
	json_decref(want);
	template_free(t);
}

/* ---- applying ---- */

static void apply_sets_clears_and_keeps(void **state)
{
	(void)state;
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": ["
		" {\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"ecx\", \"bitmap\": \"0bxxxxxx0xxxxxxxxxxxxxxxxxxxxxxxxx\"},"
		"   {\"register\": \"eax\", \"bitmap\": \"0b00000000000000000000011000000000\"}]},"
		" {\"leaf\": \"0x7\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": ["
		"   {\"register\": \"ebx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0\"}]},"
		" {\"leaf\": \"0x0\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"ebx\", \"bitmap\": \"0b01100101011101000110100101001011\"}]}]}");
	struct table plain, t1;
	char msg[300] = "";
	assert_int_equal(build(&plain, NULL, msg, sizeof(msg)), 0);
	if (build(&t1, t, msg, sizeof(msg)) < 0)
		fail_msg("%s", msg);
	assert_int_equal(t1.n, plain.n);
	/* AES cleared, every other ECX bit as normalised (hypervisor set, VMX clear). */
	assert_int_equal(leaf(&t1, 0x1, 0)->ecx, leaf(&plain, 0x1, 0)->ecx & ~L1_ECX_AES);
	assert_true(leaf(&t1, 0x1, 0)->ecx & L1_ECX_HYPERVISOR);
	assert_int_equal(leaf(&t1, 0x1, 0)->eax, 0x600);
	assert_int_equal(leaf(&t1, 0x7, 0)->ebx, host[4].ebx & ~L7_EBX_FSGSBASE);
	assert_int_equal(leaf(&t1, 0x7, 0)->ecx, host[4].ecx);
	/* A non-feature register is forced freely: "Kite" for "Genu". */
	assert_int_equal(leaf(&t1, 0x0, 0)->ebx, 0x6574694b);
	assert_int_equal(leaf(&t1, 0x0, 0)->ecx, host[0].ecx);
	/* Untouched leaves are the normalised ones. */
	assert_memory_equal(leaf(&t1, 0x80000008, 0), leaf(&plain, 0x80000008, 0), sizeof(plain.e[0]));
	assert_memory_equal(leaf(&t1, 0x40000001, 0), leaf(&plain, 0x40000001, 0), sizeof(plain.e[0]));
	template_free(t);
}

static void apply_adds_missing_leaf(void **state)
{
	(void)state;
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": ["
		" {\"leaf\": \"0x80000004\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"edx\", \"bitmap\": \"0b0000000000000000000000000x100001\"}]},"
		" {\"leaf\": \"0xd\", \"subleaf\": \"0x2\", \"flags\": 1, \"modifiers\": []}]}");
	struct table plain, t1;
	char msg[300] = "";
	assert_int_equal(build(&plain, NULL, msg, sizeof(msg)), 0);
	if (build(&t1, t, msg, sizeof(msg)) < 0)
		fail_msg("%s", msg);
	assert_int_equal(t1.n, plain.n + 2);
	struct kvm_cpuid_entry2 *x = leaf(&t1, 0x80000004, 0);
	assert_int_equal(x->edx, 0x21);
	assert_int_equal(x->eax | x->ebx | x->ecx, 0);
	assert_int_equal(x->flags, 0);
	x = leaf(&t1, 0xd, 2);
	assert_int_equal(x->index, 2);
	assert_int_equal(x->flags, IDX);
	assert_int_equal(x->eax | x->ebx | x->ecx | x->edx, 0);
	/* Subleaf 1 is still the host's. */
	assert_int_equal(leaf(&t1, 0xd, 1)->eax, 0xf);
	template_free(t);
}

static void apply_refuses_subleaf_of_plain_leaf(void **state)
{
	(void)state;
	/* 0x80000008 has no subleaves on this host: subleaf 3 cannot be told apart. */
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": [{\"leaf\": \"0x80000008\", \"subleaf\": \"0x3\", \"flags\": 1, \"modifiers\": ["
		" {\"register\": \"eax\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}]}]}");
	struct table t1;
	char msg[300] = "";
	assert_int_equal(build(&t1, t, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "CPUID leaf 0x80000008 has no subleaves on this host"));
	template_free(t);
}

static void apply_no_room(void **state)
{
	(void)state;
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": [{\"leaf\": \"0x80000005\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}]}");
	struct table t1;
	host_table(&t1);
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1};
	char msg[300] = "";
	/* Room for the KVM leaf kite adds (0x40000000), none for the template's. */
	assert_int_equal(cpuid_build(t1.e, &t1.n, NHOST + 1, &o, t, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "too many CPUID leaves"));
	assert_int_equal(t1.n, NHOST + 1);
	template_free(t);
}

/* A template fixing every bit (a dump of vCPU 0 of a 1-vCPU VM) leaves each
 * vCPU its own APIC id and the VM's topology. */
static void topology_stays_kites(void **state)
{
	(void)state;
	struct table t0, plain, t1;
	host_table(&t0);
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1, .tsc_deadline = true};
	char msg[300] = "";
	assert_int_equal(cpuid_build(t0.e, &t0.n, CPUID_MAX_ENTRIES, &o, NULL, msg, sizeof(msg)), 0);
	struct cpu_template *dump = template_from_cpuid(t0.e, t0.n);
	assert_non_null(dump);
	assert_int_equal(build(&plain, NULL, msg, sizeof(msg)), 0);
	if (build(&t1, dump, msg, sizeof(msg)) < 0)
		fail_msg("%s", msg);
	/* Applied on vCPU 1 of 4 of the same host: exactly what kite gives without it. */
	assert_int_equal(t1.n, plain.n);
	assert_memory_equal(t1.e, plain.e, plain.n * sizeof(plain.e[0]));
	assert_int_equal(leaf(&t1, 0x1, 0)->ebx >> 24, 1);
	assert_true(leaf(&t1, 0x1, 0)->edx & L1_EDX_HTT);
	assert_int_equal(leaf(&t1, 0xb, 0)->edx, 1);
	assert_int_equal(leaf(&t1, 0xb, 1)->ebx, 4);
	template_free(dump);
}

static void dump_fixes_every_bit(void **state)
{
	(void)state;
	struct table t0;
	char msg[300] = "";
	assert_int_equal(build(&t0, NULL, msg, sizeof(msg)), 0);
	struct cpu_template *d = template_from_cpuid(t0.e, t0.n);
	assert_int_equal(d->nr_cpuid, t0.n);
	assert_int_equal(d->nr_msr, 0);
	for (unsigned i = 0; i < d->nr_cpuid; i++) {
		assert_int_equal(d->cpuid[i].leaf, t0.e[i].function);
		assert_int_equal(d->cpuid[i].flags, t0.e[i].flags & IDX);
		assert_int_equal(d->cpuid[i].subleaf, (t0.e[i].flags & IDX) ? t0.e[i].index : 0);
		for (unsigned r = 0; r < TREG_NR; r++)
			assert_int_equal(d->cpuid[i].reg[r].mask, UINT32_MAX);
	}
	assert_int_equal(d->cpuid[4].reg[TREG_EBX].value, t0.e[4].ebx);
	/* Printed, no 'x' in any bitmap; parsed back, the same template. */
	json_t *j = template_to_json(d);
	size_t i, k;
	json_t *l, *m;
	json_array_foreach(json_object_get(j, "cpuid_modifiers"), i, l) {
		assert_int_equal(json_array_size(json_object_get(l, "modifiers")), 4);
		json_array_foreach(json_object_get(l, "modifiers"), k, m) {
			const char *bm = json_string_value(json_object_get(m, "bitmap"));
			assert_int_equal(strlen(bm), 34);
			assert_null(strchr(bm + 2, 'x'));
		}
	}
	char why[300];
	struct cpu_template *back = template_from_json(j, why, sizeof(why));
	assert_non_null(back);
	assert_int_equal(back->nr_cpuid, d->nr_cpuid);
	assert_memory_equal(back->cpuid, d->cpuid, d->nr_cpuid * sizeof(d->cpuid[0]));
	json_decref(j);
	template_free(back);
	template_free(d);
}

/* ---- what the host cannot satisfy ---- */

static void refuses_unsatisfiable(void **state)
{
	(void)state;
	static const struct {
		const char *leaf, *subleaf, *reg, *bitmap, *msg;
		int flags;
	} cases[] = {
		/* AVX-512F: this host's KVM does not offer it. */
		{"0x7", "0x0", "ebx", "0bxxxxxxxxxxxxxxx1xxxxxxxxxxxxxxxx", "leaf 0x7 subleaf 0x0 ebx bit 16,", 1},
		/* VMX and SVM: KVM offers them, kite hides them. */
		{"0x1", "0x0", "ecx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxx1xxxxx", "leaf 0x1 subleaf 0x0 ecx bit 5,", 0},
		{"0x80000001", "0x0", "ecx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1xx", "leaf 0x80000001 subleaf 0x0 ecx bit 2,", 0},
		/* A PMU, which kite hides. */
		{"0xa", "0x0", "eax", "0b00000111001100000000010000000100", "leaf 0xa subleaf 0x0 eax bit 2 (and 6 more bits)", 0},
		/* A KVM paravirt feature KVM offers and kite does not ask for (bit 5: steal time). */
		{"0x40000001", "0x0", "eax", "0bxxxxxxxxxxxxxxxxxxxxxxxxxx1xxxxx", "leaf 0x40000001 subleaf 0x0 eax bit 5,", 0},
		/* XSAVE components and 0xd.1 features the host lacks. */
		{"0xd", "0x0", "eax", "0bxxxxxxxxxxxxxxxxxxxxxxx1xxxxxxxx", "leaf 0xd subleaf 0x0 eax bit 8,", 1},
		{"0xd", "0x1", "eax", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxx1xxxx", "leaf 0xd subleaf 0x1 eax bit 4,", 1},
		/* Bit 4 offered, bit 5 not. */
		{"0x7", "0x1", "eax", "0bxxxxxxxxxxxxxxxxxxxxxxxxxx11xxxx", "leaf 0x7 subleaf 0x1 eax bit 5,", 1},
		{"0x7", "0x0", "edx", "0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx11", "edx bit 0 (and 1 more bit)", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512], msg[300] = "";
		snprintf(text, sizeof(text),
			 "{\"cpuid_modifiers\": [{\"leaf\": \"%s\", \"subleaf\": \"%s\", \"flags\": %d, \"modifiers\": ["
			 "{\"register\": \"%s\", \"bitmap\": \"%s\"}]}]}",
			 cases[i].leaf, cases[i].subleaf, cases[i].flags, cases[i].reg, cases[i].bitmap);
		struct cpu_template *t = parse_ok(text);
		struct table t1;
		if (build(&t1, t, msg, sizeof(msg)) == 0)
			fail_msg("accepted: %s", text);
		if (!strstr(msg, cases[i].msg) || !strstr(msg, "a template the host cannot satisfy"))
			fail_msg("%s\n  said:     %s\n  expected: %s", text, msg, cases[i].msg);
		template_free(t);
	}
	/* A feature leaf the host does not have at all: nothing of it can be set. */
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": [{\"leaf\": \"0x7\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": ["
		"{\"register\": \"ecx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}]}]}");
	char msg[300] = "";
	assert_int_equal(template_check(t, host, 2, msg, sizeof(msg)), -1); /* 0x0 and 0x1 only */
	assert_non_null(strstr(msg, "leaf 0x7 subleaf 0x0 ecx bit 0,"));
	assert_int_equal(template_check(t, host, NHOST, msg, sizeof(msg)), -1); /* 0x7 ECX bit 0: 0 */
	template_free(t);
}

static void satisfiable_bits_pass(void **state)
{
	(void)state;
	/* Feature bits the host offers, bits kite or KVM manage (HTT, OSXSAVE,
	 * APIC, OSPKE), clearing anything, and non-feature registers (family,
	 * vendor, brand, leaf 0x7's subleaf count) forced to anything. */
	struct cpu_template *t = parse_ok(
		"{\"cpuid_modifiers\": ["
		" {\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"ecx\", \"bitmap\": \"0b1x0x1xxxxxxxxxxxxxxxxxxxxxxxxxx1\"},"
		"   {\"register\": \"edx\", \"bitmap\": \"0bxxx1xxxxxxxxxxxxxxxxxx1xxxxxxxx1\"},"
		"   {\"register\": \"eax\", \"bitmap\": \"0b11111111111111111111111111111111\"}]},"
		" {\"leaf\": \"0x7\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": ["
		"   {\"register\": \"eax\", \"bitmap\": \"0b11111111111111111111111111111111\"},"
		"   {\"register\": \"ecx\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxx1xxxx\"},"
		"   {\"register\": \"ebx\", \"bitmap\": \"0b00000000000000000000000000000001\"}]},"
		" {\"leaf\": \"0x80000002\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"eax\", \"bitmap\": \"0b01100101011101000110100101001011\"}]},"
		" {\"leaf\": \"0x40000001\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
		"   {\"register\": \"eax\", \"bitmap\": \"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1\"}]}]}");
	struct table t1;
	char msg[300] = "";
	if (build(&t1, t, msg, sizeof(msg)) < 0)
		fail_msg("refused: %s", msg);
	assert_int_equal(leaf(&t1, 0x1, 0)->eax, UINT32_MAX);
	assert_true(leaf(&t1, 0x1, 0)->ecx & L1_ECX_OSXSAVE);
	assert_int_equal(leaf(&t1, 0x7, 0)->ebx, L7_EBX_FSGSBASE);
	assert_int_equal(leaf(&t1, 0x80000002, 0)->eax, 0x6574694b);
	/* The check alone says the same. */
	struct table plain;
	assert_int_equal(build(&plain, NULL, msg, sizeof(msg)), 0);
	assert_int_equal(template_check(t, plain.e, plain.n, msg, sizeof(msg)), 0);
	template_free(t);
}

/* ---- intersection ---- */

static struct cpu_template *intersect_texts(const char *const *texts, unsigned n)
{
	struct cpu_template *in[8] = {0};
	for (unsigned i = 0; i < n; i++)
		in[i] = parse_ok(texts[i]);
	struct cpu_template *t = template_intersect((const struct cpu_template *const *)in, n);
	for (unsigned i = 0; i < n; i++)
		template_free(in[i]);
	assert_non_null(t);
	return t;
}

static void assert_template_json(const struct cpu_template *t, const char *want_text)
{
	json_t *got = template_to_json(t);
	json_error_t je;
	json_t *want = json_loads(want_text, 0, &je);
	if (!want)
		fail_msg("bad expected JSON at %d:%d: %s", je.line, je.column, je.text);
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_INDENT(1)), *w = json_dumps(want, JSON_INDENT(1));
		fail_msg("got:\n%s\nwanted:\n%s", g, w);
	}
	json_decref(got);
	json_decref(want);
}

#define M(reg, bm) "{\"register\": \"" reg "\", \"bitmap\": \"" bm "\"}"
#define L(leaf, sub, flags, ...) "{\"leaf\": \"" leaf "\", \"subleaf\": \"" sub "\", \"flags\": " #flags ", \"modifiers\": [" __VA_ARGS__ "]}"

/* Three hosts' templates, written by hand. */
static const char *const host_a =
	"{\"cpuid_modifiers\": ["
	L("0x0", "0x0", 0, M("eax", "0b00000000_00000000_00000000_00011111") ","
			   M("ebx", "0b01110101_01101110_01100101_01000111")) ","
	L("0x1", "0x0", 0, M("eax", "0b00000000_00001001_00000110_11101010") ","
			   M("ecx", "0bxxxxxxxx_xxxxxxxx_xxxxxxxx_xxxx1111")) ","
	L("0x7", "0x0", 1, M("ebx", "0b00000000_00000000_00000000_00001011")) "],"
	" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
	"\"0b00000000_00000000_00000000_00000000_00000000_00000000_00000000_00001011\"}]}";
static const char *const host_b =
	"{\"cpuid_modifiers\": ["
	L("0x0", "0x0", 0, M("eax", "0b00000000_00000000_00000000_00010110") ","
			   M("ebx", "0b01110101_01101110_01100101_01000111")) ","
	L("0x1", "0x0", 0, M("eax", "0b00000000_00001001_00000110_11101011") ","
			   M("ecx", "0bxxxxxxxx_xxxxxxxx_xxxxxxxx_xxxx0111")) ","
	L("0x7", "0x0", 1, M("ebx", "0b00000000_00000000_00000000_0000x011")) "],"
	" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
	"\"0b00000000_00000000_00000000_00000000_00000000_00000000_00000000_00001001\"}]}";
static const char *const host_c =
	"{\"cpuid_modifiers\": ["
	L("0x7", "0x0", 1, M("ebx", "0b00000000_00000000_00000000_00001011")) ","
	L("0x1", "0x0", 0, M("ecx", "0bxxxxxxxx_xxxxxxxx_xxxxxxxx_xxxxx1x1") ","
			   M("eax", "0b00000000_00001001_00000110_11101010")) ","
	L("0x0", "0x0", 0, M("eax", "0b00000000_00000000_00000000_00011011") ","
			   M("ebx", "0b01110101_01101110_01100101_01000111")) ","
	L("0x80000001", "0x0", 0, M("ecx", "0bxxxxxxxx_xxxxxxxx_xxxxxxxx_xxxxxxx1")) ","
	L("0x80000008", "0x0", 0, M("ebx", "0bxxxxxxxx_xxxxxxxx_xxxxxxxx_xxxxxxx0")) "],"
	" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
	"\"0b00000000_00000000_00000000_00000000_00000000_00000000_00000000_00001011\"}]}";

static void intersect_hand_written(void **state)
{
	(void)state;
	const char *const in[] = {host_a, host_b, host_c};
	struct cpu_template *t = intersect_texts(in, 3);
	/* 0x0 EAX: the smallest highest leaf; EBX: "Genu" everywhere.
	 * 0x1 EAX: steppings differ in bit 0 only, which becomes x. ECX: bit 0 1
	 * everywhere; bit 1 x in C; bit 2 1 everywhere; bit 3 0 in B.
	 * 0x7 EBX: bit 3 x in B, the rest agrees (feature AND).
	 * 0x80000001 only in C, all 1 or x: nothing certain, left out.
	 * 0x80000008 EBX bit 0 is 0 in C, so 0 in the fleet.
	 * MSR 0x10a: bit 1 differs, x; the rest agrees. */
	assert_template_json(t,
		"{\"cpuid_modifiers\": ["
		L("0x0", "0x0", 0, M("eax", "0b00000000000000000000000000010110") ","
				   M("ebx", "0b01110101011011100110010101000111")) ","
		L("0x1", "0x0", 0, M("eax", "0b0000000000001001000001101110101x") ","
				   M("ecx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx01x1")) ","
		L("0x7", "0x0", 1, M("ebx", "0b0000000000000000000000000000x011")) ","
		L("0x80000008", "0x0", 0, M("ebx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0")) "],"
		" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
		"\"0b00000000000000000000000000000000000000000000000000000000000010x1\"}]}");
	template_free(t);

	/* Two inputs: A and C. C lacks nothing A fixes; C's extra leaves as above. */
	const char *const ac[] = {host_a, host_c};
	t = intersect_texts(ac, 2);
	assert_template_json(t,
		"{\"cpuid_modifiers\": ["
		L("0x0", "0x0", 0, M("eax", "0b00000000000000000000000000011011") ","
				   M("ebx", "0b01110101011011100110010101000111")) ","
		L("0x1", "0x0", 0, M("eax", "0b00000000000010010000011011101010") ","
				   M("ecx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1x1")) ","
		L("0x7", "0x0", 1, M("ebx", "0b00000000000000000000000000001011")) ","
		L("0x80000008", "0x0", 0, M("ebx", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0")) "],"
		" \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
		"\"0b0000000000000000000000000000000000000000000000000000000000001011\"}]}");
	template_free(t);
}

static void intersect_is_a_meet(void **state)
{
	(void)state;
	/* With itself: the same template. Order does not change the bits. */
	const char *const aa[] = {host_a, host_a};
	struct cpu_template *t = intersect_texts(aa, 2);
	struct cpu_template *a = parse_ok(host_a);
	json_t *ja = template_to_json(a), *jt = template_to_json(t);
	assert_true(json_equal(ja, jt));
	json_decref(ja);
	json_decref(jt);
	template_free(t);
	template_free(a);

	const char *const abc[] = {host_a, host_b, host_c}, *const cba[] = {host_c, host_b, host_a};
	struct cpu_template *x = intersect_texts(abc, 3), *y = intersect_texts(cba, 3);
	for (unsigned i = 0; i < x->nr_cpuid; i++) {
		const struct tmpl_cpuid *cx = &x->cpuid[i], *cy = NULL;
		for (unsigned k = 0; k < y->nr_cpuid; k++)
			if (y->cpuid[k].leaf == cx->leaf && y->cpuid[k].subleaf == cx->subleaf)
				cy = &y->cpuid[k];
		assert_non_null(cy);
		assert_memory_equal(cx->reg, cy->reg, sizeof(cx->reg));
	}
	assert_int_equal(x->nr_cpuid, y->nr_cpuid);
	template_free(x);
	template_free(y);
}

/* Dumps of two hosts: the intersection is satisfiable on both, and applied on
 * either gives the same feature registers. */
static void intersect_of_dumps_applies_on_both(void **state)
{
	(void)state;
	struct table h1, h2;
	char msg[300] = "";
	assert_int_equal(build(&h1, NULL, msg, sizeof(msg)), 0);
	/* Host 2: no AES, AVX-512F, a smaller highest leaf, other stepping. */
	host_table(&h2);
	h2.e[0].eax = 0x16;
	h2.e[1].eax = 0x000906eb;
	h2.e[1].ecx &= ~L1_ECX_AES;
	h2.e[4].ebx |= L7_EBX_AVX512F;
	h2.e[4].eax = 0; /* no 0x7.1 */
	memmove(&h2.e[5], &h2.e[6], (h2.n - 6) * sizeof(h2.e[0]));
	h2.n--;
	assert_null(cpuid_find(h2.e, h2.n, 0x7, 1));
	struct table raw2 = h2;
	assert_int_equal(cpuid_build(h2.e, &h2.n, CPUID_MAX_ENTRIES, &one_of_four, NULL, msg, sizeof(msg)), 0);
	struct cpu_template *d[2] = {template_from_cpuid(h1.e, h1.n), template_from_cpuid(h2.e, h2.n)};
	struct cpu_template *base = template_intersect((const struct cpu_template *const *)d, 2);
	assert_non_null(base);

	struct table g1, g2 = raw2;
	if (build(&g1, base, msg, sizeof(msg)) < 0)
		fail_msg("host 1 refused the baseline: %s", msg);
	if (cpuid_build(g2.e, &g2.n, CPUID_MAX_ENTRIES, &one_of_four, base, msg, sizeof(msg)) < 0)
		fail_msg("host 2 refused the baseline: %s", msg);
	static const struct {
		uint32_t fn, idx;
	} feat[] = {{0x1, 0}, {0x7, 0}, {0x80000001, 0}, {0xd, 1}, {0x40000001, 0}};
	for (size_t i = 0; i < sizeof(feat) / sizeof(feat[0]); i++) {
		struct kvm_cpuid_entry2 *a = leaf(&g1, feat[i].fn, feat[i].idx), *b = leaf(&g2, feat[i].fn, feat[i].idx);
		assert_int_equal(a->ecx, b->ecx);
		assert_int_equal(a->edx, b->edx);
		assert_int_equal(a->ebx, b->ebx);
	}
	assert_int_equal(leaf(&g1, 0x1, 0)->ecx & L1_ECX_AES, 0);
	assert_int_equal(leaf(&g2, 0x7, 0)->ebx & L7_EBX_AVX512F, 0);
	assert_int_equal(leaf(&g1, 0x0, 0)->eax, 0x16);
	assert_int_equal(leaf(&g2, 0x0, 0)->eax, 0x16);
	/* Host 2 has no 0x7.1: its features are x, but no guest looks at 0x7.1. */
	assert_int_equal(leaf(&g1, 0x7, 0)->eax, 0);
	assert_int_equal(leaf(&g2, 0x7, 0)->eax, 0);
	/* Family/model/stepping differ in one bit: each host keeps its own. */
	assert_int_equal(leaf(&g1, 0x1, 0)->eax, 0x000906ea);
	assert_int_equal(leaf(&g2, 0x1, 0)->eax, 0x000906eb);
	template_free(base);
	template_free(d[0]);
	template_free(d[1]);
}

/* The leaves a PVM host takes from the hardware (template_warn_host). */
static void touches_hw_leaves(void **state)
{
	(void)state;
	assert_false(template_touches_hw_leaves(NULL));
	struct cpu_template *t = parse_ok(host_c); /* 0x0, 0x1 EAX, 0x7 ... */
	assert_true(template_touches_hw_leaves(t));
	template_free(t);
	t = parse_ok(LEAF("{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": ["
			  "{\"register\": \"eax\", \"bitmap\": " BM32 "}, {\"register\": \"ebx\", \"bitmap\": " BM32 "}]},"
			  "{\"leaf\": \"0xd\", \"subleaf\": \"0x1\", \"flags\": 1, \"modifiers\": []}"));
	assert_false(template_touches_hw_leaves(t)); /* 0x1 EAX/EBX and an empty 0xd.1 */
	template_free(t);
	t = parse_ok(LEAF(MOD("\"edx\"", BM32)));
	assert_true(template_touches_hw_leaves(t));
	template_free(t);
	t = parse_ok("{\"cpuid_modifiers\": [{\"leaf\": \"0xd\", \"subleaf\": \"0x0\", \"flags\": 1, \"modifiers\": "
		     "[{\"register\": \"ebx\", \"bitmap\": " BM32 "}]}]}");
	assert_true(template_touches_hw_leaves(t));
	template_free(t);
}

/* ---- files ---- */

static void load_errors_name_the_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/kite-template-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128], msg[400];
	snprintf(path, sizeof(path), "%s/missing.json", dir);
	assert_null(template_load(path, msg, sizeof(msg)));
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "No such file"));

	assert_null(template_load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "Is a directory"));

	snprintf(path, sizeof(path), "%s/bad.json", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"cpuid_modifiers\": [\n,]}", f);
	fclose(f);
	assert_null(template_load(path, msg, sizeof(msg)));
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "invalid JSON at line 2"));

	f = fopen(path, "w");
	fputs("{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"0b1\"}]}", f);
	fclose(f);
	assert_null(template_load(path, msg, sizeof(msg)));
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "msr_modifiers[0].bitmap '0b1': 1 bits where 64 are needed"));

	f = fopen(path, "w");
	fputs(host_a, f);
	fclose(f);
	struct cpu_template *t = template_load(path, msg, sizeof(msg));
	assert_non_null(t);
	assert_int_equal(t->nr_cpuid, 3);
	template_free(t);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bitmap_valid),
		cmocka_unit_test(bitmap_wrong_length),
		cmocka_unit_test(bitmap_bad_characters),
		cmocka_unit_test(numbers),
		cmocka_unit_test(parse_valid_and_merged),
		cmocka_unit_test(parse_errors),
		cmocka_unit_test(too_many_leaves),
		cmocka_unit_test(json_round_trip),
		cmocka_unit_test(apply_sets_clears_and_keeps),
		cmocka_unit_test(apply_adds_missing_leaf),
		cmocka_unit_test(apply_refuses_subleaf_of_plain_leaf),
		cmocka_unit_test(apply_no_room),
		cmocka_unit_test(topology_stays_kites),
		cmocka_unit_test(dump_fixes_every_bit),
		cmocka_unit_test(refuses_unsatisfiable),
		cmocka_unit_test(satisfiable_bits_pass),
		cmocka_unit_test(intersect_hand_written),
		cmocka_unit_test(intersect_is_a_meet),
		cmocka_unit_test(intersect_of_dumps_applies_on_both),
		cmocka_unit_test(touches_hw_leaves),
		cmocka_unit_test(load_errors_name_the_file),
	};
	return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
