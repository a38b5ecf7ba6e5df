/* The jail's directory tree: <base>/<exec_name>/<id>/root holding the exec
 * file, the device nodes a microVM needs and a run/ directory, owned so the
 * jailed uid/gid can use them. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "jailer/jailer.h"

/* Devices a microVM opens: KVM, TAP (virtio-net) and an entropy source.
 * urandom is world-usable on every host; the others only for the jailed ids. */
static const struct {
	const char *host, *jail;
	mode_t mode;
} devices[] = {
	{"/dev/kvm", "dev/kvm", 0660},
	{"/dev/net/tun", "dev/net/tun", 0660},
	{"/dev/urandom", "dev/urandom", 0666},
};

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(fd, buf, len, off);
	return n == (ssize_t)len ? 0 : -1;
}

int jail_check_exec(const char *path, struct kite_err *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': not a regular file", path);
	if (!(st.st_mode & 0111))
		return err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': not executable", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': %s", path, strerror(errno));
	/* The jail holds no dynamic loader and no libraries: only a static
	 * executable can run there. Reject the others now with a reason rather
	 * than have execve fail inside with ENOENT. */
	Elf64_Ehdr eh;
	int r = 0;
	if (pread_all(fd, &eh, sizeof(eh), 0) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 256) {
		r = err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': not an x86-64 ELF executable", path);
		goto out;
	}
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (eh.e_phoff > (uint64_t)st.st_size ||
		    pread_all(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) < 0) {
			r = err_set(err, JAIL_EXIT_USAGE, "--exec-file '%s': truncated ELF program headers", path);
			goto out;
		}
		if (ph.p_type == PT_INTERP) {
			r = err_set(err, JAIL_EXIT_USAGE,
				    "--exec-file '%s': dynamically linked, and the jail has no loader or "
				    "libraries; use a static build (see docs/jailer.md)",
				    path);
			goto out;
		}
	}
out:
	close(fd);
	return r;
}

static int mkdir_p(char *path, mode_t mode)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		int r = mkdir(path, mode);
		*p = '/';
		if (r < 0 && errno != EEXIST)
			return -1;
	}
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	if (out < 0) {
		int e = errno;
		close(in);
		errno = e;
		return -1;
	}
	char buf[65536];
	int r = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -1;
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				r = -1;
				break;
			}
			off += w;
		}
		if (r < 0)
			break;
	}
	int e = errno;
	/* mode explicitly: the umask must not take the execute bits away */
	if (r == 0 && fchmod(out, 0755) < 0)
		r = -1, e = errno;
	if (close(out) < 0 && r == 0)
		r = -1, e = errno;
	close(in);
	errno = e;
	return r;
}

/* Could uid/gid execute a file with this owner and mode (without being root)? */
static bool jailed_can_exec(const struct stat *st, uid_t uid, gid_t gid)
{
	if (st->st_uid == uid)
		return st->st_mode & S_IXUSR;
	if (st->st_gid == gid)
		return st->st_mode & S_IXGRP;
	return st->st_mode & S_IXOTH;
}

/* A hard link when it lands on the same file system and the jailed ids may
 * execute the original; a root-owned 0755 copy otherwise. */
static int place_exec(const struct jail_opts *o, const char *dst, struct kite_err *err)
{
	struct stat st;
	if (stat(o->exec_file, &st) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "stat '%s': %s", o->exec_file, strerror(errno));
	if (jailed_can_exec(&st, o->uid, o->gid)) {
		if (link(o->exec_file, dst) == 0)
			return 0;
		if (errno != EXDEV && errno != EPERM)
			return err_set(err, JAIL_EXIT_SETUP, "link '%s' to '%s': %s", o->exec_file, dst, strerror(errno));
	}
	if (copy_file(o->exec_file, dst) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "copy '%s' to '%s': %s", o->exec_file, dst, strerror(errno));
	return 0;
}

static int owned_dir(const char *path, mode_t mode, const struct jail_opts *o, bool chown_it, struct kite_err *err)
{
	if (mkdir(path, mode) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "mkdir '%s': %s", path, strerror(errno));
	if (chmod(path, mode) < 0 || (chown_it && chown(path, o->uid, o->gid) < 0))
		return err_set(err, JAIL_EXIT_SETUP, "set owner and mode of '%s': %s", path, strerror(errno));
	return 0;
}

int jail_chroot_build(const struct jail_opts *o, char *dir, size_t len, struct kite_err *err)
{
	/* Host devices first, so a host without them leaves nothing behind. */
	struct stat dev[sizeof(devices) / sizeof(devices[0])];
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		if (stat(devices[i].host, &dev[i]) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "host device %s: %s%s", devices[i].host, strerror(errno),
				       strcmp(devices[i].host, "/dev/kvm") == 0 ? " (load kvm_intel or kvm_amd)"
				       : strcmp(devices[i].host, "/dev/net/tun") == 0 ? " (load the tun module)" : "");
		if (!S_ISCHR(dev[i].st_mode))
			return err_set(err, JAIL_EXIT_SETUP, "host device %s is not a character device", devices[i].host);
	}

	char base[256];
	snprintf(base, sizeof(base), "%s", o->chroot_base);
	if (mkdir_p(base, 0755) < 0)
		return err_set(err, JAIL_EXIT_SETUP, "create --chroot-base-dir '%s': %s", o->chroot_base, strerror(errno));
	struct statvfs vfs;
	if (statvfs(base, &vfs) == 0 && (vfs.f_flag & ST_NODEV))
		return err_set(err, JAIL_EXIT_USAGE,
			       "--chroot-base-dir '%s' is on a file system mounted nodev: device nodes "
			       "there would not open",
			       o->chroot_base);

	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", o->exec_file);
	const char *name = basename(tmp);
	char jaildir[PATH_MAX];
	snprintf(jaildir, sizeof(jaildir), "%s/%s", base, name);
	if (mkdir(jaildir, 0755) < 0 && errno != EEXIST)
		return err_set(err, JAIL_EXIT_SETUP, "mkdir '%s': %s", jaildir, strerror(errno));
	size_t jl = strlen(jaildir);
	snprintf(jaildir + jl, sizeof(jaildir) - jl, "/%s", o->id);
	/* mkdir is the atomic claim on the id: two jailers racing for it get one EEXIST. */
	if (mkdir(jaildir, 0755) < 0) {
		if (errno == EEXIST)
			return err_set(err, JAIL_EXIT_EXISTS,
				       "'%s' already exists: another jail uses id '%s', or an old one was not cleaned up",
				       jaildir, o->id);
		return err_set(err, JAIL_EXIT_SETUP, "mkdir '%s': %s", jaildir, strerror(errno));
	}
	int n = snprintf(dir, len, "%s/root", jaildir);
	if (n < 0 || (size_t)n >= len)
		return err_set(err, JAIL_EXIT_SETUP, "jail path too long");
	/* root/ belongs to the jailed user (kite creates its API socket there);
	 * dev/ stays root's so it cannot swap the device nodes. */
	if (owned_dir(dir, 0755, o, true, err) < 0)
		return -1;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (place_exec(o, path, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/dev", dir);
	if (owned_dir(path, 0755, o, false, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/dev/net", dir);
	if (owned_dir(path, 0755, o, false, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/run", dir);
	if (owned_dir(path, 0755, o, true, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, devices[i].jail);
		if (mknod(path, S_IFCHR | 0600, dev[i].st_rdev) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "mknod '%s' (%u:%u): %s", path, major(dev[i].st_rdev),
				       minor(dev[i].st_rdev), strerror(errno));
		if (chown(path, o->uid, o->gid) < 0 || chmod(path, devices[i].mode) < 0)
			return err_set(err, JAIL_EXIT_SETUP, "set owner and mode of '%s': %s", path, strerror(errno));
	}
	return 0;
}
