/* `kite cpu-template dump|intersect|check`: templates made from this host's
 * CPUID and from other templates (docs/cpu-templates.md). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/template.h"
#include "util/log.h"

static void cli_usage(FILE *f)
{
	fprintf(f,
		"usage: kite cpu-template dump [--out FILE]\n"
		"       kite cpu-template intersect FILE FILE... [--out FILE]\n"
		"       kite cpu-template check FILE\n"
		"\n"
		"dump: the CPUID kite gives a guest on this host, as a CPU template with every\n"
		"bit fixed. intersect: the template of the features every input has (the fleet\n"
		"baseline; docs/cpu-templates.md). check: can this host satisfy the template?\n"
		"Templates use Firecracker's PUT /cpu-config format; apply one with\n"
		"`kite run --cpu-template FILE` or PUT /cpu-config.\n"
		"Exit codes: 0 done, 1 the output cannot be written, 2 bad usage or a bad\n"
		"input (unreadable, not JSON, not a valid template, a template this host\n"
		"cannot satisfy), 3 /dev/kvm unusable.\n");
}

static int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cli_error(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kite: error: cpu-template ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	return code;
}

static int write_out(const struct cpu_template *t, const char *out, const char *cmd)
{
	json_t *j = template_to_json(t);
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!s)
		return cli_error(KITE_EXIT_ERROR, "%s: out of memory", cmd);
	int code = 0;
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f) {
		code = cli_error(KITE_EXIT_ERROR, "%s: cannot write '%s': %s", cmd, out, strerror(errno));
	} else {
		bool bad = fputs(s, f) < 0 || fputc('\n', f) < 0;
		bad |= out ? fclose(f) != 0 : fflush(f) != 0;
		if (bad)
			code = cli_error(KITE_EXIT_ERROR, "%s: cannot write '%s': %s", cmd, out ? out : "stdout",
					 strerror(errno));
	}
	free(s);
	return code;
}

int template_main(int argc, char **argv)
{
	if (argc < 2)
		return cli_error(KITE_EXIT_USAGE, "needs a command: dump, intersect or check (see 'kite cpu-template --help')");
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		cli_usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "dump") != 0 && strcmp(cmd, "intersect") != 0 && strcmp(cmd, "check") != 0)
		return cli_error(KITE_EXIT_USAGE, "unknown command '%s': expected dump, intersect or check (see 'kite cpu-template --help')",
				 cmd);
	const char *out = NULL;
	const char **files = calloc((size_t)argc, sizeof(*files));
	unsigned nfiles = 0;
	int code = 0;
	if (!files)
		return cli_error(KITE_EXIT_ERROR, "out of memory");
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cli_usage(stdout);
			goto done;
		}
		if (strcmp(a, "--out") == 0 || strncmp(a, "--out=", 6) == 0) {
			const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !*v) {
				code = cli_error(KITE_EXIT_USAGE, "%s: --out needs a file path", cmd);
				goto done;
			}
			if (strcmp(cmd, "check") == 0) {
				code = cli_error(KITE_EXIT_USAGE, "check: --out is not an option of check");
				goto done;
			}
			out = v;
		} else if (a[0] == '-' && a[1] != 0 && strcmp(a, "--") != 0) {
			code = cli_error(KITE_EXIT_USAGE, "%s: unknown option '%s' (see 'kite cpu-template --help')", cmd, a);
			goto done;
		} else if (strcmp(a, "--") == 0) {
			while (++i < argc)
				files[nfiles++] = argv[i];
		} else {
			files[nfiles++] = a;
		}
	}

	char msg[400];
	if (strcmp(cmd, "dump") == 0) {
		if (nfiles) {
			code = cli_error(KITE_EXIT_USAGE, "dump: unexpected argument '%s'", files[0]);
			goto done;
		}
		struct kvm_cpuid2 *c;
		if (template_host_cpuid(&c, msg, sizeof(msg)) < 0) {
			code = cli_error(KITE_EXIT_KVM, "dump: %s", msg);
			goto done;
		}
		struct cpu_template *t = template_from_cpuid(c->entries, c->nent);
		free(c);
		const char *caveat = template_host_caveat();
		if (caveat)
			log_warn("%s: guests see more of them than the dump shows", caveat);
		code = t ? write_out(t, out, cmd) : cli_error(KITE_EXIT_ERROR, "dump: out of memory");
		template_free(t);
	} else if (strcmp(cmd, "check") == 0) {
		if (nfiles != 1) {
			code = cli_error(KITE_EXIT_USAGE, "check: expected one template file");
			goto done;
		}
		struct cpu_template *t = template_load(files[0], msg, sizeof(msg));
		if (!t) {
			code = cli_error(KITE_EXIT_USAGE, "check: %s", msg);
			goto done;
		}
		struct kvm_cpuid2 *c;
		if (template_host_cpuid(&c, msg, sizeof(msg)) < 0) {
			template_free(t);
			code = cli_error(KITE_EXIT_KVM, "check: %s", msg);
			goto done;
		}
		unsigned n = c->nent;
		/* The check and then the application, as a vCPU would see it. */
		struct kvm_cpuid2 *w = calloc(1, sizeof(*w) + (n + t->nr_cpuid) * sizeof(w->entries[0]));
		if (!w) {
			code = cli_error(KITE_EXIT_ERROR, "check: out of memory");
		} else {
			memcpy(w->entries, c->entries, n * sizeof(c->entries[0]));
			if (template_check(t, c->entries, n, msg, sizeof(msg)) < 0 ||
			    template_apply_cpuid(t, w->entries, &n, n + t->nr_cpuid, msg, sizeof(msg)) < 0)
				code = cli_error(KITE_EXIT_USAGE, "check: '%s': %s", files[0], msg);
			else
				printf("%s: this host can satisfy the template\n", files[0]);
		}
		free(w);
		free(c);
		template_free(t);
	} else {
		if (nfiles < 2) {
			code = cli_error(KITE_EXIT_USAGE, "intersect: expected at least two template files");
			goto done;
		}
		struct cpu_template **in = calloc(nfiles, sizeof(*in));
		if (!in) {
			code = cli_error(KITE_EXIT_ERROR, "intersect: out of memory");
			goto done;
		}
		unsigned loaded = 0;
		for (; loaded < nfiles; loaded++) {
			in[loaded] = template_load(files[loaded], msg, sizeof(msg));
			if (!in[loaded]) {
				code = cli_error(KITE_EXIT_USAGE, "intersect: %s", msg);
				break;
			}
		}
		if (!code) {
			struct cpu_template *t = template_intersect((const struct cpu_template *const *)in, nfiles);
			code = t ? write_out(t, out, cmd)
				 : cli_error(KITE_EXIT_ERROR, "intersect: more than %d leaves in the result", TMPL_MAX_CPUID);
			template_free(t);
		}
		for (unsigned i = 0; i < loaded; i++)
			template_free(in[i]);
		free(in);
	}
done:
	free(files);
	return code;
}
