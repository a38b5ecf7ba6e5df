/* Custom CPU templates in Firecracker's PUT /cpu-config format (docs/cpu-templates.md):
 * CPUID and MSR modifiers whose bitmaps force bits to 0 or 1 or keep them ('x').
 * Parsing and printing (JSON), applying them to kite's normalised CPUID, the check
 * that this host can satisfy a template, the intersection of templates (a fleet
 * baseline) and the `kite cpu-template` command. Everything but the /dev/kvm
 * helpers and the command is pure and unit-tested. */
#ifndef KITE_TEMPLATE_H
#define KITE_TEMPLATE_H

#include <jansson.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpuid.h"

enum { TREG_EAX, TREG_EBX, TREG_ECX, TREG_EDX, TREG_NR };

/* The bits a modifier fixes (mask) and the values it fixes them to (value,
 * never outside mask). A zero mask leaves the register alone. */
struct tmpl_bits {
	uint32_t mask, value;
};

struct tmpl_cpuid {
	uint32_t leaf, subleaf;
	uint32_t flags; /* 0 or KVM_CPUID_FLAG_SIGNIFCANT_INDEX */
	struct tmpl_bits reg[TREG_NR];
};

struct tmpl_msr {
	uint32_t addr;
	uint64_t mask, value;
};

#define TMPL_MAX_CPUID 256
#define TMPL_MAX_MSR 256

/* One entry per leaf/subleaf and per MSR: modifiers of the same one given twice
 * are merged, the later winning where both fix a bit (as if applied in order). */
struct cpu_template {
	unsigned nr_cpuid, nr_msr;
	struct tmpl_cpuid cpuid[TMPL_MAX_CPUID];
	struct tmpl_msr msr[TMPL_MAX_MSR];
};

/* "0b" then exactly `bits` (32 or 64) characters of 0, 1 or x, '_' allowed
 * between them as a separator. 0 or -1 with msg. */
int tmpl_parse_bitmap(const char *s, unsigned bits, uint64_t *mask, uint64_t *value, char *msg,
		      size_t len);
/* "0x" hex, "0b" binary or decimal digits, at most 0xffffffff. 0 or -1. */
int tmpl_parse_u32(const char *s, uint32_t *out);

/* A CpuConfig object; NULL with msg naming the member at fault. */
struct cpu_template *template_from_json(const json_t *j, char *msg, size_t len);
/* A template file; NULL with msg naming the file and the problem. */
struct cpu_template *template_load(const char *path, char *msg, size_t len);
/* Every bit fixed: registers with a zero mask and leaves without registers are left out. */
json_t *template_to_json(const struct cpu_template *t);
void template_free(struct cpu_template *t);

/* The whole table as a template, every bit fixed (what `kite cpu-template dump` prints). */
struct cpu_template *template_from_cpuid(const struct kvm_cpuid_entry2 *e, unsigned n);

/* Refuses a template that sets a feature bit (docs/cpu-templates.md lists the
 * feature registers) the normalised table `ref` does not offer. 0 or -1 with msg. */
int template_check(const struct cpu_template *t, const struct kvm_cpuid_entry2 *ref, unsigned n,
		   char *msg, size_t len);
/* Applies the CPUID modifiers to e[0..*n), adding the leaves the table lacks
 * (never beyond max). 0 or -1 with msg. */
int template_apply_cpuid(const struct cpu_template *t, struct kvm_cpuid_entry2 *e, unsigned *n,
			 unsigned max, char *msg, size_t len);

/* The guest's CPUID of one vCPU: kite's normalisation of the supported table,
 * then the template if any (checked, applied), then the topology again.
 * max must leave room for the KVM leaves and the template's new leaves. */
int cpuid_build(struct kvm_cpuid_entry2 *e, unsigned *n, unsigned max, const struct cpuid_opts *o,
		const struct cpu_template *t, char *msg, size_t len);

/* The intersection of n templates (docs/cpu-templates.md): feature bits 1 only
 * where every input has 1, 0 where any has 0; other bits fixed only where all
 * inputs agree; the highest basic and extended leaves the smallest. */
struct cpu_template *template_intersect(const struct cpu_template *const *in, unsigned n);

/* What kite would give vCPU 0 of a one-vCPU VM on this host (no template).
 * Allocates *out. 0, or -1 with msg when /dev/kvm cannot answer. */
int template_host_cpuid(struct kvm_cpuid2 **out, char *msg, size_t len);
/* template_check against this host; 0 also when /dev/kvm cannot be asked
 * (the vCPU set-up checks again). */
int template_check_host(const struct cpu_template *t, char *msg, size_t len);

/* Why this host's guests may not see what a template says, or NULL: on a PVM
 * host (kvm_pvm) the hardware's features in CPUID 0x1 ECX/EDX, 0x7 and 0xd. */
const char *template_host_caveat(void);
/* Does the template fix bits of CPUID 0x1 ECX/EDX, 0x7 or 0xd? */
bool template_touches_hw_leaves(const struct cpu_template *t);
/* A warning when this host's KVM ignores the leaves the template modifies
 * (PVM: the hardware's 0x1 ECX/EDX, 0x7 and 0xd reach the guest). */
void template_warn_host(const struct cpu_template *t);

/* `kite cpu-template dump|intersect|check ...` (template_cli.c): returns the exit code. */
int template_main(int argc, char **argv);

#endif
