/* `kite jail`: the order of the steps is the design. Everything that can be
 * checked is checked before anything is created; the cgroup is made before
 * the chroot (a refused setting leaves nothing behind); namespaces, then
 * pivot_root, then rlimits; privileges go last, right before the exec. */
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>

#include "jailer/jailer.h"

/* Only stdin, stdout and stderr cross into the jail. */
static void close_other_fds(void)
{
	if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
		return;
	long max = sysconf(_SC_OPEN_MAX);
	for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
		close((int)fd);
}

static int open_netns(const char *path, struct kite_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, JAIL_EXIT_USAGE, "--netns '%s': %s", path, strerror(errno));
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type != CLONE_NEWNET) {
		close(fd);
		return err_set(err, JAIL_EXIT_USAGE, "--netns '%s': not a network namespace", path);
	}
	return fd;
}

/* Is / the initial ramfs? pivot_root cannot move that one away. */
static bool root_is_rootfs(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool r = false;
	while (getline(&line, &cap, f) > 0) {
		char mnt[8], type[16];
		const char *sep = strstr(line, " - ");
		if (sep && sscanf(line, "%*s %*s %*s %*s %7s", mnt) == 1 && strcmp(mnt, "/") == 0 &&
		    sscanf(sep + 3, "%15s", type) == 1)
			r = strcmp(type, "rootfs") == 0;
	}
	free(line);
	fclose(f);
	return r;
}

/* A private mount namespace whose root is the chroot: the old root is
 * detached entirely, not only hidden as by chroot(2). */
static int enter_chroot(const char *dir, struct kite_err *err)
{
	if (unshare(CLONE_NEWNS) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "unshare(CLONE_NEWNS): %s", strerror(errno));
	/* Nothing done below may propagate back to the host's mounts. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "make / private: %s", strerror(errno));
	/* pivot_root wants the new root to be a mount point. */
	if (mount(dir, dir, NULL, MS_BIND, NULL) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "bind-mount '%s' onto itself: %s", dir, strerror(errno));
	if (chdir(dir) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "chdir '%s': %s", dir, strerror(errno));
	if (mkdir("old_root", 0700) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "mkdir '%s/old_root': %s", dir, strerror(errno));
	if (syscall(SYS_pivot_root, ".", "old_root") < 0) {
		int e = errno;
		if (e == EINVAL && root_is_rootfs())
			return err_set(err, JAIL_EXIT_SETUP,
				       "pivot_root: / is the initramfs (rootfs), which cannot be pivoted away; run "
				       "the jailer from a mounted root file system (switch_root, or a chroot into a "
				       "bind mount of /)");
		return err_set(err, JAIL_EXIT_SETUP, "pivot_root into '%s': %s", dir, strerror(e));
	}
	if (umount2("old_root", MNT_DETACH) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "detach the old root: %s", strerror(errno));
	if (rmdir("old_root") < 0)
		return err_set(err, JAIL_EXIT_SETUP, "rmdir old_root: %s", strerror(errno));
	if (chdir("/") < 0 || chroot(".") < 0)
		return err_set(err, JAIL_EXIT_SETUP, "chroot into the new root: %s", strerror(errno));
	return 0;
}

static int set_rlimits(const struct jail_opts *o, struct kite_err *err)
{
	uint64_t nofile = o->have_nofile ? o->nofile : JAIL_DEFAULT_NOFILE;
	struct rlimit rl = {.rlim_cur = nofile, .rlim_max = nofile};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "--resource-limit no-file=%llu: %s", (unsigned long long)nofile,
			       strerror(errno));
	if (o->have_fsize) {
		rl.rlim_cur = rl.rlim_max = o->fsize;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "--resource-limit fsize=%llu: %s",
				       (unsigned long long)o->fsize, strerror(errno));
	}
	return 0;
}

/* For good: supplementary groups, then gid, then uid (the order that still
 * has the privilege each step needs); then proof that root cannot come back. */
static int drop_privileges(const struct jail_opts *o, struct kite_err *err)
{
	if (setgroups(0, NULL) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "setgroups: %s", strerror(errno));
	if (setresgid(o->gid, o->gid, o->gid) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "setresgid(%u): %s", o->gid, strerror(errno));
	if (setresuid(o->uid, o->uid, o->uid) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "setresuid(%u): %s", o->uid, strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (setuid(0) == 0 || seteuid(0) == 0 || (o->gid != 0 && setgid(0) == 0))
		return err_set(err, JAIL_EXIT_SETUP, "privileges could be regained after dropping to %u:%u", o->uid,
			       o->gid);
	return 0;
}

static int daemonize(int devnull, struct kite_err *err)
{
	if (setsid() < 0)
		return err_set(err, JAIL_EXIT_SETUP,
			       "--daemonize: setsid: %s (the jailer must not be a process group leader)",
			       strerror(errno));
	for (int fd = 0; fd < 3; fd++)
		if (dup2(devnull, fd) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "--daemonize: redirect fd %d: %s", fd, strerror(errno));
	close(devnull);
	return 0;
}

static pid_t child_pid;

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* The parent side of --new-pid-ns: records the child's pid as Firecracker's
 * jailer does (<exec_name>.pid in the jail root), then either leaves
 * (--daemonize) or waits and exits as kite did, passing termination signals
 * on, since its caller knows only this pid. */
static int pidns_parent(const struct jail_opts *o, const char *name, pid_t child, struct kite_err *err)
{
	char path[NAME_MAX + 8];
	snprintf(path, sizeof(path), "/%s.pid", name);
	FILE *f = fopen(path, "we");
	if (!f || fprintf(f, "%d\n", (int)child) < 0 || fclose(f) != 0)
		return err_set(err, JAIL_EXIT_SETUP, "write %s in the jail: %s", path, strerror(errno));
	if (o->daemonize)
		return 0;
	child_pid = child;
	struct sigaction sa = {.sa_handler = forward_signal};
	sigemptyset(&sa.sa_mask);
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	if (drop_privileges(o, err) < 0) {
		kill(child, SIGKILL);
		return -1;
	}
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return err_set(err, JAIL_EXIT_SETUP, "waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int jail(const struct jail_opts *o, struct kite_err *err)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", o->exec_file);
	const char *name = basename(tmp);

	if (jail_check_exec(o->exec_file, err) < 0)
		return -1;
	int netns = -1;
	if (o->netns && (netns = open_netns(o->netns, err)) < 0)
		return -1;
	int devnull = -1;
	if (o->daemonize && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "open /dev/null: %s", strerror(errno));

	struct jail_cgroup cg;
	if (jail_cgroup_check(o, &cg, err) < 0 || jail_cgroup_create(o, &cg, err) < 0)
		return -1;
	char dir[PATH_MAX];
	if (jail_chroot_build(o, dir, sizeof(dir), err) < 0) {
		jail_cgroup_abandon(&cg);
		return -1;
	}
	if (jail_cgroup_join(&cg, err) < 0)
		return -1;
	/* Before the mount namespace: the path lives in the host's tree. */
	if (netns >= 0) {
		if (setns(netns, CLONE_NEWNET) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "--netns '%s': setns: %s", o->netns, strerror(errno));
		close(netns);
	}
	if (o->new_pid_ns && unshare(CLONE_NEWPID) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "unshare(CLONE_NEWPID): %s", strerror(errno));
	if (enter_chroot(dir, err) < 0 || set_rlimits(o, err) < 0)
		return -1;

	if (o->daemonize && daemonize(devnull, err) < 0)
		return -1;
	if (o->new_pid_ns) {
		/* The first child is pid 1 of the new namespace. */
		pid_t pid = fork();
		if (pid < 0)
			return err_set(err, JAIL_EXIT_SETUP, "fork into the new pid namespace: %s", strerror(errno));
		if (pid > 0)
			return pidns_parent(o, name, pid, err);
	}
	if (drop_privileges(o, err) < 0)
		return -1;

	/* kite takes --id in its API form; a subcommand (`run`) must come first and has no --id. */
	char *argv[JAIL_MAX_VMM_ARGS + 4];
	int n = 0;
	char path[NAME_MAX + 2];
	snprintf(path, sizeof(path), "/%s", name);
	argv[n++] = (char *)name;
	if (o->n_vmm_args == 0 || o->vmm_args[0][0] == '-') {
		argv[n++] = "--id";
		argv[n++] = (char *)o->id;
	}
	for (int i = 0; i < o->n_vmm_args; i++)
		argv[n++] = o->vmm_args[i];
	argv[n] = NULL;
	char *envp[] = {NULL};
	execve(path, argv, envp);
	return err_set(err, JAIL_EXIT_SETUP, "exec %s in the jail: %s", path, strerror(errno));
}

/* fds 0-2 open, so nothing the jailer opens later lands on them and is
 * then handed to kite as its stdin, stdout or stderr. */
static void ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			_exit(JAIL_EXIT_SETUP);
}

int jail_main(int argc, char **argv)
{
	ensure_stdio();
	close_other_fds();
	struct jail_opts o;
	struct kite_err err = {0};
	int r = jail_parse(argc, argv, &o, &err);
	if (r == 1)
		return 0;
	if (r == 0) {
		r = jail(&o, &err);
		if (r >= 0 && !err.code)
			return r; /* the pid namespace's parent: kite's exit code */
	}
	fprintf(stderr, "kite jail: error: %s\n", err.msg);
	return err.code;
}
