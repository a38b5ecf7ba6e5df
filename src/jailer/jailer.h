/* `kite jail`: starts kite confined the way Firecracker's jailer confines
 * Firecracker (see docs/jailer.md): a chroot of its own under
 * <chroot_base>/<exec_file_name>/<id>/root entered with pivot_root in a new
 * mount namespace, device nodes for KVM, TAP and entropy, cgroup v2 limits,
 * rlimits, an optional network and pid namespace, no other fds, no root. */
#ifndef KITE_JAILER_H
#define KITE_JAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

/* Exit codes of the jailer itself (before kite is exec'd; after that the
 * codes are kite's). Documented in docs/jailer.md. */
enum jail_exit {
	JAIL_EXIT_SETUP = 1,   /* a system call building the jail failed */
	JAIL_EXIT_USAGE = 2,   /* bad command line or a value that cannot be used */
	JAIL_EXIT_EXISTS = 7,  /* the jail directory already exists (id in use) */
	JAIL_EXIT_CGROUP = 8,  /* --cgroup given but no usable cgroup v2 hierarchy */
};

#define JAIL_ID_MAX 64
#define JAIL_MAX_CGROUPS 32
#define JAIL_MAX_VMM_ARGS 256
#define JAIL_DEFAULT_CHROOT_BASE "/srv/jailer"
#define JAIL_DEFAULT_PARENT_CGROUP "kite"
#define JAIL_DEFAULT_NOFILE 2048

struct jail_cgroup_setting {
	const char *file;  /* "cpu.max": a file of the microVM's cgroup */
	const char *value; /* "50000 100000" */
	char controller[32]; /* "cpu"; "cgroup" for the core files */
};

struct jail_opts {
	const char *id;
	const char *exec_file;
	uint32_t uid, gid;
	const char *chroot_base;
	const char *netns;
	const char *parent_cgroup;
	bool have_parent_cgroup; /* --parent-cgroup given: a cgroup even without --cgroup */
	bool daemonize;
	bool new_pid_ns;
	struct jail_cgroup_setting cgroups[JAIL_MAX_CGROUPS];
	size_t n_cgroups;
	bool have_fsize, have_nofile;
	uint64_t fsize, nofile;
	char **vmm_args; /* the arguments after "--", forwarded to kite */
	int n_vmm_args;
};

/* Parses `kite jail` arguments (argv[0] is "jail"; strings are borrowed from
 * argv). Checks formats only, touching nothing on the host. Returns 0, 1 for
 * --help (usage printed), or -1 with err set (JAIL_EXIT_USAGE). */
int jail_parse(int argc, char **argv, struct jail_opts *o, struct kite_err *err);

/* cgroup v2 (src/jailer/cgroup.c). A cgroup is used when --cgroup or
 * --parent-cgroup is given. jail_cgroup_check runs before anything is created:
 * it finds the cgroup2 mount and checks that every controller the settings
 * name is available there (JAIL_EXIT_CGROUP otherwise). jail_cgroup_create
 * makes <root>/<parent>/<id>, enabling the controllers on the way down, and
 * writes the settings; jail_cgroup_join moves the calling process in;
 * jail_cgroup_abandon removes a cgroup this run created (after a failure). */
struct jail_cgroup {
	bool used;
	bool created;
	char root[256]; /* mount point of the cgroup2 hierarchy */
	char path[512]; /* the microVM's cgroup directory */
};
int jail_cgroup_check(const struct jail_opts *o, struct jail_cgroup *cg, struct kite_err *err);
int jail_cgroup_create(const struct jail_opts *o, struct jail_cgroup *cg, struct kite_err *err);
int jail_cgroup_join(const struct jail_cgroup *cg, struct kite_err *err);
void jail_cgroup_abandon(struct jail_cgroup *cg);

/* The chroot (src/jailer/chroot.c): creates <base>/<exec_name>/<id>/root
 * (refusing an existing <id> directory), places the exec file at
 * root/<exec_name>, creates dev/kvm, dev/net/tun, dev/urandom and run/ for
 * the jailed uid/gid. dir receives the chroot path. */
int jail_chroot_build(const struct jail_opts *o, char *dir, size_t len, struct kite_err *err);
/* Checks the exec file is a regular, executable, statically linked ELF file
 * (a jail has no dynamic loader or libraries). */
int jail_check_exec(const char *path, struct kite_err *err);

/* argv[0] is "jail". Execs kite on success; returns an exit code otherwise. */
int jail_main(int argc, char **argv);

#endif
