/* CPUID normalisation on a fake KVM_GET_SUPPORTED_CPUID table: per-vCPU APIC
 * ids and topology, what is hidden from the guest, and the KVM paravirt leaves. */
#include "unit.h"

#include "arch/x86/cpuid.h"

#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define KVM_SUPPORTED 0x01007afbu /* what a recent host reports in 0x40000001 EAX */

#define L1_ECX_VMX (1u << 5)
#define L1_ECX_TSC_DEADLINE (1u << 24)
#define L1_ECX_HYPERVISOR (1u << 31)
#define L1_EDX_HTT (1u << 28)

/* Cache descriptor for leaf 4: type, level, junk in the sharing fields that
 * normalisation must replace. */
static uint32_t leaf4_eax(unsigned type, unsigned level)
{
	return (0x3fu << 26) | (0xfffu << 14) | (1u << 8) | (level << 5) | type;
}

static const struct kvm_cpuid_entry2 supported[] = {
	{.function = 0x0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69},
	{.function = 0x1, .eax = 0x000906ea, .ebx = 0xab100800, .ecx = 0x7efafbbf | L1_ECX_VMX,
	 .edx = 0xbfebfbff},
	{.function = 0x4, .index = 0, .flags = IDX, .eax = 0, .ebx = 0x01c0003f, .ecx = 0x3f},
	{.function = 0x4, .index = 1, .flags = IDX, .ebx = 0x01c0003f, .ecx = 0x3f},
	{.function = 0x4, .index = 2, .flags = IDX, .ebx = 0x00c0003f, .ecx = 0x3ff},
	{.function = 0x4, .index = 3, .flags = IDX, .ebx = 0x03c0003f, .ecx = 0x2fff},
	{.function = 0x4, .index = 4, .flags = IDX}, /* no more caches */
	{.function = 0x7, .index = 0, .flags = IDX, .ebx = 0x029c6fbf, .ecx = 0x40000000},
	{.function = 0xa, .eax = 0x07300404, .ebx = 0, .ecx = 0, .edx = 0x00000603},
	{.function = 0xb, .index = 0, .flags = IDX, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 7},
	{.function = 0xb, .index = 1, .flags = IDX, .eax = 4, .ebx = 8, .ecx = 0x201, .edx = 7},
	{.function = 0xb, .index = 2, .flags = IDX, .eax = 0, .ebx = 0, .ecx = 2, .edx = 7},
	{.function = 0x1f, .index = 0, .flags = IDX, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 7},
	{.function = 0x1f, .index = 1, .flags = IDX, .eax = 4, .ebx = 8, .ecx = 0x201, .edx = 7},
	{.function = 0x1f, .index = 2, .flags = IDX, .eax = 0, .ebx = 0, .ecx = 2, .edx = 7},
	{.function = 0x40000000, .eax = 0x40000001, .ebx = 0x11111111, .ecx = 0x22222222,
	 .edx = 0x33333333},
	{.function = 0x40000001, .eax = KVM_SUPPORTED, .edx = 0x1},
	{.function = 0x80000000, .eax = 0x80000008},
	{.function = 0x80000001, .ecx = 0x00000121 | (1u << 2), .edx = 0x2c100800},
	{.function = 0x80000008, .eax = 0x00003027, .ecx = 0x0000f0ff},
	{.function = 0x8000001e, .eax = 0xdead, .ebx = 0x0107, .ecx = 0x0303, .edx = 0xbeef},
};
#define NSUP (sizeof(supported) / sizeof(supported[0]))

struct table {
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	unsigned n;
};

static void load(struct table *t, unsigned id, unsigned cpus, bool deadline)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->e, supported, sizeof(supported));
	t->n = NSUP;
	struct cpuid_opts o = {.vcpu_id = id, .nr_vcpus = cpus, .tsc_deadline = deadline};
	assert_int_equal(cpuid_normalize(t->e, &t->n, CPUID_MAX_ENTRIES, &o), 0);
}

static struct kvm_cpuid_entry2 *leaf(struct table *t, uint32_t fn, uint32_t idx)
{
	struct kvm_cpuid_entry2 *x = cpuid_find(t->e, t->n, fn, idx);
	assert_non_null(x);
	return x;
}

static void find_honours_index_flag(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e[NSUP];
	memcpy(e, supported, sizeof(e));
	assert_int_equal(cpuid_find(e, NSUP, 0x4, 3)->index, 3);
	assert_int_equal(cpuid_find(e, NSUP, 0xb, 2)->index, 2);
	assert_null(cpuid_find(e, NSUP, 0x4, 5));
	/* Without the flag the index is ignored. */
	assert_ptr_equal(cpuid_find(e, NSUP, 0x1, 7), &e[1]);
	assert_null(cpuid_find(e, NSUP, 0x12345678, 0));
	assert_null(cpuid_find(e, 0, 0x0, 0));
}

static void leaf1_apic_id_and_count(void **state)
{
	(void)state;
	struct table t;
	for (unsigned id = 0; id < 4; id++) {
		load(&t, id, 4, false);
		struct kvm_cpuid_entry2 *x = leaf(&t, 0x1, 0);
		assert_int_equal(x->ebx >> 24, id);
		assert_int_equal((x->ebx >> 16) & 0xff, 4);
		assert_int_equal(x->ebx & 0xffff, 0x0800); /* CLFLUSH line size kept */
		assert_true(x->ecx & L1_ECX_HYPERVISOR);
		assert_true(x->edx & L1_EDX_HTT);
		assert_int_equal(x->eax, 0x000906ea);
	}
	load(&t, 253, 254, false);
	assert_int_equal(leaf(&t, 0x1, 0)->ebx >> 24, 253);
	assert_int_equal((leaf(&t, 0x1, 0)->ebx >> 16) & 0xff, 254);
}

static void leaf1_single_cpu_no_htt(void **state)
{
	(void)state;
	struct table t;
	load(&t, 0, 1, false);
	struct kvm_cpuid_entry2 *x = leaf(&t, 0x1, 0);
	assert_int_equal(x->edx & L1_EDX_HTT, 0);
	assert_int_equal((x->ebx >> 16) & 0xff, 1);
	assert_int_equal(x->ebx >> 24, 0);
	/* nr_vcpus 0 is taken as 1. */
	load(&t, 0, 0, false);
	x = leaf(&t, 0x1, 0);
	assert_int_equal(x->edx & L1_EDX_HTT, 0);
	assert_int_equal((x->ebx >> 16) & 0xff, 1);
}

static void leaf1_tsc_deadline_when_requested(void **state)
{
	(void)state;
	struct table t;
	load(&t, 0, 2, true);
	assert_true(leaf(&t, 0x1, 0)->ecx & L1_ECX_TSC_DEADLINE);
	/* Host table without the bit, not requested: stays clear. */
	load(&t, 0, 2, false);
	assert_int_equal(leaf(&t, 0x1, 0)->ecx & L1_ECX_TSC_DEADLINE, 0);
}

static void leaf1_tsc_deadline_cleared_when_not_requested(void **state)
{
	(void)state;
	/* A supported table that already has TSC-deadline (newer KVMs report it
	 * in KVM_GET_SUPPORTED_CPUID) loses it when the option says not to offer it. */
	struct kvm_cpuid_entry2 e[NSUP];
	memcpy(e, supported, sizeof(e));
	e[1].ecx |= L1_ECX_TSC_DEADLINE;
	unsigned n = NSUP;
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 2, .tsc_deadline = false};
	assert_int_equal(cpuid_normalize(e, &n, NSUP, &o), 0);
	assert_int_equal(e[1].ecx & L1_ECX_TSC_DEADLINE, 0);
}

static void nested_virtualization_hidden(void **state)
{
	(void)state;
	struct table t;
	load(&t, 0, 1, false);
	assert_int_equal(leaf(&t, 0x1, 0)->ecx & L1_ECX_VMX, 0);
	assert_int_equal(leaf(&t, 0x80000001, 0)->ecx & (1u << 2), 0); /* SVM */
	assert_int_equal(leaf(&t, 0x80000001, 0)->ecx, 0x00000121);
}

static void leaf_0b_1f_topology(void **state)
{
	(void)state;
	static const unsigned counts[] = {1, 2, 3, 4, 5, 8, 9, 254};
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		unsigned cpus = counts[k];
		for (unsigned id = 0; id < cpus; id += (cpus > 8 ? cpus / 3 : 1)) {
			struct table t;
			load(&t, id, cpus, false);
			static const uint32_t fns[] = {0xb, 0x1f};
			for (int f = 0; f < 2; f++) {
				struct kvm_cpuid_entry2 *smt = leaf(&t, fns[f], 0);
				struct kvm_cpuid_entry2 *core = leaf(&t, fns[f], 1);
				struct kvm_cpuid_entry2 *inv = leaf(&t, fns[f], 2);
				for (unsigned s = 0; s < 3; s++)
					assert_int_equal(leaf(&t, fns[f], s)->edx, id);
				/* SMT level: one thread per core. */
				assert_int_equal((smt->ecx >> 8) & 0xff, 1);
				assert_int_equal(smt->ecx & 0xff, 0);
				assert_int_equal(smt->ebx & 0xffff, 1);
				assert_int_equal(smt->eax & 0x1f, 0);
				/* Core level: all vCPUs, and a shift wide enough for every id. */
				assert_int_equal((core->ecx >> 8) & 0xff, 2);
				assert_int_equal(core->ecx & 0xff, 1);
				assert_int_equal(core->ebx & 0xffff, cpus);
				unsigned shift = core->eax & 0x1f;
				assert_true((1u << shift) >= cpus);
				assert_true(shift == 0 || (1u << (shift - 1)) < cpus);
				/* Then the invalid level that ends the enumeration. */
				assert_int_equal((inv->ecx >> 8) & 0xff, 0);
				assert_int_equal(inv->ecx & 0xff, 2);
				assert_int_equal(inv->ebx & 0xffff, 0);
			}
		}
	}
}

static void leaf4_cache_sharing(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	memcpy(e, supported, sizeof(supported));
	uint32_t orig[6] = {0};
	orig[2] = e[2].eax = leaf4_eax(1, 1); /* L1d */
	orig[3] = e[3].eax = leaf4_eax(2, 1); /* L1i */
	orig[4] = e[4].eax = leaf4_eax(3, 2); /* L2 */
	orig[5] = e[5].eax = leaf4_eax(3, 3); /* L3 */
	unsigned n = NSUP;
	struct cpuid_opts o = {.vcpu_id = 1, .nr_vcpus = 6};
	assert_int_equal(cpuid_normalize(e, &n, CPUID_MAX_ENTRIES, &o), 0);
	for (int i = 2; i <= 5; i++) {
		assert_int_equal(e[i].eax >> 26, 5); /* cores per package - 1 */
		assert_int_equal(e[i].eax & 0x3fff, orig[i] & 0x3fff);
		unsigned sharing = (e[i].eax >> 14) & 0xfff;
		unsigned level = (e[i].eax >> 5) & 7;
		assert_int_equal(sharing, level == 3 ? 5 : 0);
		assert_int_equal(e[i].ebx, supported[i].ebx);
		assert_int_equal(e[i].ecx, supported[i].ecx);
	}
	assert_int_equal(e[2].eax & 0xff, (1u << 5) | 1);
	assert_int_equal(e[5].eax & 0xff, (3u << 5) | 3);
	/* The terminating null descriptor stays null. */
	assert_int_equal(e[6].eax, 0);
}

static void pmu_hidden(void **state)
{
	(void)state;
	struct table t;
	load(&t, 0, 2, false);
	struct kvm_cpuid_entry2 *x = leaf(&t, 0xa, 0);
	assert_int_equal(x->eax, 0);
	assert_int_equal(x->ebx, 0);
	assert_int_equal(x->ecx, 0);
	assert_int_equal(x->edx, 0);
}

static void amd_topology_leaves(void **state)
{
	(void)state;
	struct table t;
	load(&t, 3, 5, false);
	struct kvm_cpuid_entry2 *x = leaf(&t, 0x80000008, 0);
	assert_int_equal(x->ecx & 0xff, 4);        /* NC: cores - 1 */
	assert_int_equal((x->ecx >> 12) & 0xf, 3); /* ApicIdCoreIdSize: 5 ids need 3 bits */
	assert_int_equal(x->ecx & 0xffff0f00u, 0);  /* other bits as the host had them */
	assert_int_equal(x->eax, 0x00003027);
	x = leaf(&t, 0x8000001e, 0);
	assert_int_equal(x->eax, 3);
	assert_int_equal(x->ebx & 0xff, 3);
	assert_int_equal((x->ebx >> 8) & 0xff, 0); /* one thread per compute unit */
	assert_int_equal(x->ecx & 0x7ff, 0);
	assert_int_equal(x->edx, 0);
}

static void kvm_signature_and_features(void **state)
{
	(void)state;
	struct table t;
	load(&t, 0, 1, false);
	assert_int_equal(t.n, NSUP); /* both leaves existed: nothing appended */
	struct kvm_cpuid_entry2 *sig = leaf(&t, 0x40000000, 0);
	char s[12];
	memcpy(s, &sig->ebx, 4);
	memcpy(s + 4, &sig->ecx, 4);
	memcpy(s + 8, &sig->edx, 4);
	assert_memory_equal(s, "KVMKVMKVM\0\0\0", 12);
	assert_true(sig->eax >= 0x40000001);

	struct kvm_cpuid_entry2 *feat = leaf(&t, 0x40000001, 0);
	assert_int_equal(feat->eax, KVM_SUPPORTED & KITE_KVM_FEATURES);
	assert_int_equal(feat->eax & ~KVM_SUPPORTED, 0);
	assert_int_equal(feat->ebx, 0);
	assert_int_equal(feat->ecx, 0);
	assert_int_equal(feat->edx, 0); /* no realtime hint */
}

static void kvm_features_never_exceed_supported(void **state)
{
	(void)state;
	static const uint32_t sup[] = {0, 0xffffffffu, 1u << 3, KITE_KVM_FEATURES,
				       ~KITE_KVM_FEATURES, 0x00000009};
	for (size_t i = 0; i < sizeof(sup) / sizeof(sup[0]); i++) {
		struct kvm_cpuid_entry2 e[NSUP];
		memcpy(e, supported, sizeof(e));
		unsigned n = NSUP;
		struct kvm_cpuid_entry2 *f = cpuid_find(e, n, 0x40000001, 0);
		f->eax = sup[i];
		struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1};
		assert_int_equal(cpuid_normalize(e, &n, NSUP, &o), 0);
		assert_int_equal(f->eax, sup[i] & KITE_KVM_FEATURES);
	}
}

/* The supported table without the KVM leaves, e.g. from an older host. */
static unsigned without_kvm_leaves(struct kvm_cpuid_entry2 *e)
{
	unsigned n = 0;
	for (unsigned i = 0; i < NSUP; i++)
		if (supported[i].function != 0x40000000 && supported[i].function != 0x40000001)
			e[n++] = supported[i];
	return n;
}

static void kvm_leaves_appended(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e[NSUP + 4];
	memset(e, 0xee, sizeof(e));
	unsigned base = without_kvm_leaves(e);
	unsigned n = base;
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1};
	assert_int_equal(cpuid_normalize(e, &n, base + 2, &o), 0);
	assert_int_equal(n, base + 2);
	struct kvm_cpuid_entry2 *sig = cpuid_find(e, n, 0x40000000, 0);
	struct kvm_cpuid_entry2 *feat = cpuid_find(e, n, 0x40000001, 0);
	assert_non_null(sig);
	assert_non_null(feat);
	assert_memory_equal(&sig->ebx, "KVMK", 4);
	/* The host said nothing about paravirt features: offer none. */
	assert_int_equal(feat->eax, 0);
	assert_int_equal(feat->flags, 0);
	assert_int_equal(feat->index, 0);
	/* Nothing written past max. */
	const uint8_t *tail = (const uint8_t *)&e[base + 2];
	for (size_t b = 0; b < sizeof(e) - (base + 2) * sizeof(e[0]); b++)
		assert_int_equal(tail[b], 0xee);
}

static void kvm_leaves_no_room(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e[NSUP + 4];
	memset(e, 0xee, sizeof(e));
	unsigned base = without_kvm_leaves(e);
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1};

	unsigned n = base;
	assert_int_equal(cpuid_normalize(e, &n, base, &o), -1); /* max == n */
	assert_true(n <= base);
	const uint8_t *tail = (const uint8_t *)&e[base];
	for (size_t b = 0; b < sizeof(e) - base * sizeof(e[0]); b++)
		assert_int_equal(tail[b], 0xee);

	/* Room for the signature only. */
	base = without_kvm_leaves(e);
	n = base;
	assert_int_equal(cpuid_normalize(e, &n, base + 1, &o), -1);
	assert_true(n <= base + 1);
	tail = (const uint8_t *)&e[base + 1];
	for (size_t b = 0; b < sizeof(e) - (base + 1) * sizeof(e[0]); b++)
		assert_int_equal(tail[b], 0xee);

	/* An empty table with room for exactly the two leaves. */
	n = 0;
	assert_int_equal(cpuid_normalize(e, &n, 2, &o), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(cpuid_normalize(e, &n, 0, &o), -1);
	assert_int_equal(n, 0);
}

static void only_feature_leaf_missing(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e[NSUP];
	unsigned n = 0;
	for (unsigned i = 0; i < NSUP; i++)
		if (supported[i].function != 0x40000001)
			e[n++] = supported[i];
	unsigned base = n;
	struct cpuid_opts o = {.vcpu_id = 0, .nr_vcpus = 1};
	assert_int_equal(cpuid_normalize(e, &n, base, &o), -1);
	assert_int_equal(cpuid_normalize(e, &n, base + 1, &o), 0);
	assert_int_equal(n, base + 1);
	assert_int_equal(cpuid_find(e, n, 0x40000001, 0)->eax, 0);
}

static void other_leaves_untouched(void **state)
{
	(void)state;
	struct table t;
	load(&t, 2, 4, true);
	assert_memory_equal(leaf(&t, 0x0, 0), &supported[0], sizeof(supported[0]));
	assert_memory_equal(leaf(&t, 0x7, 0), &supported[7], sizeof(supported[7]));
	assert_memory_equal(leaf(&t, 0x80000000, 0), &supported[17], sizeof(supported[17]));
}

static void idempotent(void **state)
{
	(void)state;
	struct table a, b;
	load(&a, 1, 3, true);
	b = a;
	struct cpuid_opts o = {.vcpu_id = 1, .nr_vcpus = 3, .tsc_deadline = true};
	assert_int_equal(cpuid_normalize(b.e, &b.n, CPUID_MAX_ENTRIES, &o), 0);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.e, b.e, a.n * sizeof(a.e[0]));
}

/* The topology pass alone puts back every identity and topology field, and
 * touches nothing else (it runs again after a CPU template). */
static void topology_pass_restores_only_topology(void **state)
{
	(void)state;
	struct table a, b;
	memset(&a, 0, sizeof(a));
	memcpy(a.e, supported, sizeof(supported));
	a.n = NSUP;
	a.e[2].eax = leaf4_eax(1, 1); /* L1 data */
	a.e[5].eax = leaf4_eax(3, 3); /* L3 unified */
	struct cpuid_opts o = {.vcpu_id = 2, .nr_vcpus = 4, .tsc_deadline = true};
	assert_int_equal(cpuid_normalize(a.e, &a.n, CPUID_MAX_ENTRIES, &o), 0);
	b = a;
	for (unsigned i = 0; i < b.n; i++) {
		struct kvm_cpuid_entry2 *x = &b.e[i];
		switch (x->function) {
		case 0x1:
			x->ebx |= 0xffff0000u;
			x->edx &= ~L1_EDX_HTT;
			break;
		case 0x4:
			if (x->eax & 0x1f)
				x->eax |= 0xffffc000u;
			break;
		case 0xb:
		case 0x1f:
		case 0x8000001e:
			x->eax = x->ebx = x->ecx = x->edx = 0x5a5a5a5a;
			break;
		case 0x80000008:
			x->ecx |= 0xf0ff;
			break;
		}
	}
	assert_int_not_equal(memcmp(a.e, b.e, a.n * sizeof(a.e[0])), 0);
	cpuid_set_topology(b.e, b.n, &o);
	assert_memory_equal(a.e, b.e, a.n * sizeof(a.e[0]));

	/* Outside the topology fields: left as they are (no hypervisor bit, VMX kept). */
	b = a;
	leaf(&b, 0x1, 0)->ecx = L1_ECX_VMX;
	leaf(&b, 0xa, 0)->eax = 0x07300404;
	cpuid_set_topology(b.e, b.n, &o);
	assert_int_equal(leaf(&b, 0x1, 0)->ecx, L1_ECX_VMX);
	assert_int_equal(leaf(&b, 0xa, 0)->eax, 0x07300404);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(find_honours_index_flag),
		cmocka_unit_test(leaf1_apic_id_and_count),
		cmocka_unit_test(leaf1_single_cpu_no_htt),
		cmocka_unit_test(leaf1_tsc_deadline_when_requested),
		cmocka_unit_test(leaf1_tsc_deadline_cleared_when_not_requested),
		cmocka_unit_test(nested_virtualization_hidden),
		cmocka_unit_test(leaf_0b_1f_topology),
		cmocka_unit_test(leaf4_cache_sharing),
		cmocka_unit_test(pmu_hidden),
		cmocka_unit_test(amd_topology_leaves),
		cmocka_unit_test(kvm_signature_and_features),
		cmocka_unit_test(kvm_features_never_exceed_supported),
		cmocka_unit_test(kvm_leaves_appended),
		cmocka_unit_test(kvm_leaves_no_room),
		cmocka_unit_test(only_feature_leaf_missing),
		cmocka_unit_test(other_leaves_untouched),
		cmocka_unit_test(idempotent),
		cmocka_unit_test(topology_pass_restores_only_topology),
	};
	return cmocka_run_group_tests_name("cpuid", tests, NULL, NULL);
}
