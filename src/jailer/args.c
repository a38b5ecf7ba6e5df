/* `kite jail` command line: Firecracker's jailer flags, checked for form
 * before anything on the host is touched. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jailer/jailer.h"

static void jail_usage(FILE *f)
{
	fprintf(f,
		"usage: kite jail --id ID --exec-file PATH --uid UID --gid GID\n"
		"                 [--chroot-base-dir DIR] [--netns PATH] [--daemonize] [--new-pid-ns]\n"
		"                 [--cgroup FILE=VALUE]... [--cgroup-version 2] [--parent-cgroup PATH]\n"
		"                 [--resource-limit fsize=N|no-file=N]... [-- KITE ARGS...]\n"
		"\n"
		"Builds <chroot-base-dir>/<exec file name>/<ID>/root (default base " JAIL_DEFAULT_CHROOT_BASE "),\n"
		"places the exec file and dev/kvm, dev/net/tun, dev/urandom there, enters it\n"
		"with pivot_root in a new mount namespace, applies cgroup v2 settings in\n"
		"<cgroup2 mount>/<parent-cgroup, default " JAIL_DEFAULT_PARENT_CGROUP ">/<ID> and rlimits (no-file %d\n"
		"unless given), drops to UID:GID and execs `<exec file> --id ID KITE ARGS...`.\n"
		"Exit codes before the exec: 1 a system call building the jail failed, 2 bad\n"
		"usage or value, 7 the jail directory exists, 8 no usable cgroup v2 hierarchy.\n"
		"See docs/jailer.md.\n",
		JAIL_DEFAULT_NOFILE);
}

static int usage_err(struct kite_err *err, const char *fmt, const char *arg)
{
	char msg[400];
	snprintf(msg, sizeof(msg), fmt, arg);
	return err_set(err, JAIL_EXIT_USAGE, "%s (see 'kite jail --help')", msg);
}

/* Strict decimal: digits only, no sign, no overflow past max. */
static int parse_num(const char *s, uint64_t max, uint64_t *out)
{
	if (!*s)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > JAIL_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	return true;
}

/* A relative path of plain names: no "", ".", ".." components, no leading '/'. */
static bool rel_path_ok(const char *s)
{
	if (!*s || strlen(s) > 128)
		return false;
	const char *p = s;
	for (;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)p[i]) && !strchr("-_.", p[i]))
				return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* "controller.name=value": the file must be a plain name with a dot after a
 * controller part; the value one non-empty line. */
static int parse_cgroup(char *arg, struct jail_opts *o, struct kite_err *err)
{
	const char *want = "--cgroup '%s': expected FILE=VALUE with FILE a cgroup file like cpu.max";
	char *eq = strchr(arg, '=');
	if (!eq)
		return usage_err(err, want, arg);
	size_t flen = (size_t)(eq - arg);
	const char *value = eq + 1;
	const char *dot = memchr(arg, '.', flen);
	if (flen == 0 || flen > 64 || !dot || dot == arg || (size_t)(dot - arg) >= sizeof(o->cgroups[0].controller) ||
	    arg[flen - 1] == '.')
		return usage_err(err, want, arg);
	for (size_t i = 0; i < flen; i++) {
		char c = arg[i];
		if (!isalnum((unsigned char)c) && c != '_' && c != '.')
			return usage_err(err, want, arg);
		if (c == '.' && arg[i + 1] == '.')
			return usage_err(err, want, arg);
	}
	if (!*value || strlen(value) > 256 || strpbrk(value, "\n\r"))
		return usage_err(err, "--cgroup '%s': expected a one-line value of 1 to 256 characters after '='", arg);
	if (o->n_cgroups == JAIL_MAX_CGROUPS)
		return usage_err(err, "--cgroup '%s': too many --cgroup settings (at most 32)", arg);
	*eq = 0; /* argv is ours to split, like getopt does */
	if (strcmp(arg, "cgroup.procs") == 0 || strcmp(arg, "cgroup.threads") == 0 ||
	    strcmp(arg, "cgroup.subtree_control") == 0) {
		*eq = '=';
		return usage_err(err, "--cgroup '%s': the jailer manages that file itself", arg);
	}
	for (size_t i = 0; i < o->n_cgroups; i++) {
		if (strcmp(o->cgroups[i].file, arg) == 0) {
			*eq = '=';
			return usage_err(err, "--cgroup '%s': that file is set twice", arg);
		}
	}
	struct jail_cgroup_setting *s = &o->cgroups[o->n_cgroups++];
	s->file = arg;
	s->value = value;
	memcpy(s->controller, arg, (size_t)(dot - arg));
	s->controller[dot - arg] = 0;
	return 0;
}

/* Firecracker's names: fsize (bytes) and no-file (one more than the highest fd). */
static int parse_rlimit(const char *arg, struct jail_opts *o, struct kite_err *err)
{
	uint64_t v;
	const char *val;
	if (strncmp(arg, "fsize=", 6) == 0) {
		val = arg + 6;
		if (o->have_fsize)
			return usage_err(err, "--resource-limit '%s': fsize is set twice", arg);
		if (parse_num(val, UINT64_MAX - 1, &v) < 0)
			return usage_err(err, "--resource-limit '%s': expected fsize=BYTES", arg);
		o->have_fsize = true;
		o->fsize = v;
		return 0;
	}
	if (strncmp(arg, "no-file=", 8) == 0) {
		val = arg + 8;
		if (o->have_nofile)
			return usage_err(err, "--resource-limit '%s': no-file is set twice", arg);
		if (parse_num(val, 1u << 30, &v) < 0 || v == 0)
			return usage_err(err, "--resource-limit '%s': expected no-file=N with N from 1 to 1073741824", arg);
		o->have_nofile = true;
		o->nofile = v;
		return 0;
	}
	return usage_err(err, "--resource-limit '%s': expected fsize=N or no-file=N", arg);
}

enum opt {
	O_ID, O_EXEC, O_UID, O_GID, O_BASE, O_NETNS, O_DAEMON, O_PIDNS, O_CGROUP, O_CGVER, O_PARENT,
	O_RLIMIT, O_HELP, O_COUNT
};
static const struct {
	const char *name;
	bool value;
	bool repeat;
} opts[O_COUNT] = {
	[O_ID] = {"--id", true, false},
	[O_EXEC] = {"--exec-file", true, false},
	[O_UID] = {"--uid", true, false},
	[O_GID] = {"--gid", true, false},
	[O_BASE] = {"--chroot-base-dir", true, false},
	[O_NETNS] = {"--netns", true, false},
	[O_DAEMON] = {"--daemonize", false, false},
	[O_PIDNS] = {"--new-pid-ns", false, false},
	[O_CGROUP] = {"--cgroup", true, true},
	[O_CGVER] = {"--cgroup-version", true, false},
	[O_PARENT] = {"--parent-cgroup", true, false},
	[O_RLIMIT] = {"--resource-limit", true, true},
	[O_HELP] = {"--help", false, false},
};

static int apply(enum opt which, char *val, struct jail_opts *o, struct kite_err *err)
{
	uint64_t v;
	switch (which) {
	case O_ID:
		if (!id_ok(val))
			return usage_err(err, "--id '%s': expected 1 to 64 letters, digits or '-'", val);
		o->id = val;
		return 0;
	case O_EXEC:
		if (!*val || strlen(val) >= PATH_MAX)
			return usage_err(err, "--exec-file '%s': expected a path", val);
		o->exec_file = val;
		return 0;
	case O_UID:
		/* 0 is refused: a jailed root keeps the capabilities that undo a chroot. */
		if (parse_num(val, UINT32_MAX - 1, &v) < 0 || v == 0)
			return usage_err(err, "--uid '%s': expected a numeric user id from 1 to 4294967294", val);
		o->uid = (uint32_t)v;
		return 0;
	case O_GID:
		if (parse_num(val, UINT32_MAX - 1, &v) < 0)
			return usage_err(err, "--gid '%s': expected a numeric group id from 0 to 4294967294", val);
		o->gid = (uint32_t)v;
		return 0;
	case O_BASE:
		if (val[0] != '/' || strlen(val) > 200)
			return usage_err(err, "--chroot-base-dir '%s': expected an absolute path (at most 200 characters)", val);
		o->chroot_base = val;
		return 0;
	case O_NETNS:
		if (!*val)
			return usage_err(err, "--netns '%s': expected the path of a network namespace", val);
		o->netns = val;
		return 0;
	case O_DAEMON:
		o->daemonize = true;
		return 0;
	case O_PIDNS:
		o->new_pid_ns = true;
		return 0;
	case O_CGROUP:
		return parse_cgroup(val, o, err);
	case O_CGVER:
		if (strcmp(val, "2") == 0)
			return 0;
		if (strcmp(val, "1") == 0)
			return usage_err(err, "--cgroup-version '%s': cgroup v1 is not supported, only 2", val);
		return usage_err(err, "--cgroup-version '%s': expected 2", val);
	case O_PARENT:
		if (!rel_path_ok(val))
			return usage_err(err, "--parent-cgroup '%s': expected a relative path of names (letters, digits, '-', '_', '.')", val);
		o->parent_cgroup = val;
		o->have_parent_cgroup = true;
		return 0;
	case O_RLIMIT:
		return parse_rlimit(val, o, err);
	case O_HELP:
	case O_COUNT:
		break;
	}
	return 0;
}

int jail_parse(int argc, char **argv, struct jail_opts *o, struct kite_err *err)
{
	memset(o, 0, sizeof(*o));
	o->chroot_base = JAIL_DEFAULT_CHROOT_BASE;
	o->parent_cgroup = JAIL_DEFAULT_PARENT_CGROUP;
	bool seen[O_COUNT] = {0};
	int i = 1;
	for (; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(a, "--", 2) != 0)
			return usage_err(err, a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s' (kite's own arguments go after '--')", a);
		size_t nlen = strcspn(a, "=");
		int which = -1;
		for (int k = 0; k < O_COUNT; k++)
			if (strlen(opts[k].name) == nlen && strncmp(a, opts[k].name, nlen) == 0)
				which = k;
		if (which < 0) {
			char name[64];
			snprintf(name, sizeof(name), "%.*s", (int)(nlen < 60 ? nlen : 60), a);
			return usage_err(err, "unknown option '%s'", name);
		}
		if (which == O_HELP) {
			jail_usage(stdout);
			return 1;
		}
		if (seen[which] && !opts[which].repeat)
			return usage_err(err, "option '%s' given twice", opts[which].name);
		seen[which] = true;
		char *val = NULL;
		if (a[nlen] == '=') {
			if (!opts[which].value)
				return usage_err(err, "option '%s' does not take a value", opts[which].name);
			val = a + nlen + 1;
		} else if (opts[which].value) {
			if (i + 1 >= argc)
				return usage_err(err, "option '%s' needs a value", opts[which].name);
			val = argv[++i];
		}
		if (apply((enum opt)which, val, o, err) < 0)
			return -1;
	}
	o->vmm_args = argv + i;
	o->n_vmm_args = argc > i ? argc - i : 0;
	if (o->n_vmm_args > JAIL_MAX_VMM_ARGS)
		return usage_err(err, "%s arguments after '--': at most 256", "too many");
	static const enum opt required[] = {O_ID, O_EXEC, O_UID, O_GID};
	for (size_t k = 0; k < sizeof(required) / sizeof(required[0]); k++)
		if (!seen[required[k]])
			return usage_err(err, "%s is required", opts[required[k]].name);
	return 0;
}
