/* cgroup v2 for the jail: <cgroup2 mount>/<parent-cgroup>/<id> with the
 * --cgroup settings written, and the jailer (so kite) moved into it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jailer/jailer.h"

/* Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* True if the comma-separated list has the item. */
static bool has_item(const char *list, const char *item)
{
	size_t n = strlen(item);
	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, item, n) == 0)
			return true;
		p += len;
		if (*p)
			p++;
	}
	return false;
}

/* The mount point of the first mountinfo entry of type fstype whose super
 * options hold opt (any options when opt is NULL); a mount at prefer wins. */
static bool find_mount(const char *fstype, const char *opt, const char *prefer, char *out, size_t outlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = 0;
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = 0;
		char *save = NULL, *mnt = NULL;
		char *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++) /* id, parent, dev, root, then the mount point */
			tok = strtok_r(NULL, " ", &save);
		mnt = tok;
		char *type = strtok_r(sep + 3, " ", &save);
		strtok_r(NULL, " ", &save); /* source */
		char *super = strtok_r(NULL, " ", &save);
		if (!mnt || !type || strcmp(type, fstype) != 0 || (opt && !has_item(super, opt)))
			continue;
		unescape(mnt);
		if (!found || (prefer && strcmp(mnt, prefer) == 0)) {
			snprintf(out, outlen, "%s", mnt);
			found = true;
			if (!prefer || strcmp(mnt, prefer) == 0)
				break;
		}
	}
	free(line);
	fclose(f);
	return found;
}

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	int e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		p += strspn(p, " ");
		size_t len = strcspn(p, " ");
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p += len;
	}
	return false;
}

int jail_cgroup_check(const struct jail_opts *o, struct jail_cgroup *cg, struct kite_err *err)
{
	memset(cg, 0, sizeof(*cg));
	if (o->n_cgroups == 0 && !o->have_parent_cgroup)
		return 0;
	cg->used = true;
	if (!find_mount("cgroup2", NULL, "/sys/fs/cgroup", cg->root, sizeof(cg->root)))
		return err_set(err, JAIL_EXIT_CGROUP,
			       "no cgroup v2 hierarchy is mounted (this host has cgroup v1 only): mount one "
			       "(mount -t cgroup2 none /sys/fs/cgroup) or drop --cgroup and --parent-cgroup");
	char path[300], ctrls[512];
	snprintf(path, sizeof(path), "%s/cgroup.controllers", cg->root);
	if (read_small(path, ctrls, sizeof(ctrls)) < 0)
		return err_set(err, JAIL_EXIT_CGROUP, "read %s: %s", path, strerror(errno));
	for (size_t i = 0; i < o->n_cgroups; i++) {
		const struct jail_cgroup_setting *s = &o->cgroups[i];
		if (strcmp(s->controller, "cgroup") == 0 || has_word(ctrls, s->controller))
			continue;
		char v1[256];
		if (find_mount("cgroup", s->controller, NULL, v1, sizeof(v1)))
			return err_set(err, JAIL_EXIT_CGROUP,
				       "--cgroup '%s': controller '%s' is on the cgroup v1 hierarchy at %s, "
				       "not in the cgroup v2 hierarchy at %s (available there: %s)",
				       s->file, s->controller, v1, cg->root, *ctrls ? ctrls : "none");
		return err_set(err, JAIL_EXIT_CGROUP,
			       "--cgroup '%s': controller '%s' is not available in the cgroup v2 hierarchy at %s "
			       "(available: %s)",
			       s->file, s->controller, cg->root, *ctrls ? ctrls : "none");
	}
	return 0;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = strlen(s);
	ssize_t w = write(fd, s, n);
	int e = errno;
	close(fd);
	if (w < 0 || (size_t)w != n) {
		errno = w < 0 ? e : EIO;
		return -1;
	}
	return 0;
}

/* Enables every controller the settings use in dir's children. */
static int enable_controllers(const struct jail_opts *o, const char *dir, struct kite_err *err)
{
	char path[600], have[512];
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
	if (read_small(path, have, sizeof(have)) < 0)
		return err_set(err, JAIL_EXIT_CGROUP, "read %s: %s", path, strerror(errno));
	for (size_t i = 0; i < o->n_cgroups; i++) {
		const char *c = o->cgroups[i].controller;
		if (strcmp(c, "cgroup") == 0 || has_word(have, c))
			continue;
		char plus[40];
		snprintf(plus, sizeof(plus), "+%s", c);
		/* EBUSY here: dir holds processes itself (cgroup v2's no internal
		 * processes rule), so its children cannot get the controller. */
		if (write_str(path, plus) < 0)
			return err_set(err, JAIL_EXIT_CGROUP, "enable controller '%s' in %s: %s", c, path,
				       strerror(errno));
		snprintf(have + strlen(have), sizeof(have) - strlen(have), " %s", c);
	}
	return 0;
}

int jail_cgroup_create(const struct jail_opts *o, struct jail_cgroup *cg, struct kite_err *err)
{
	if (!cg->used)
		return 0;
	char dir[512];
	snprintf(dir, sizeof(dir), "%s", cg->root);
	/* Walk <parent>/<id> one name at a time: controllers are handed down level by level. */
	char rel[JAIL_ID_MAX + 200];
	snprintf(rel, sizeof(rel), "%s/%s", o->parent_cgroup, o->id);
	for (char *p = rel; *p;) {
		size_t n = strcspn(p, "/");
		bool last = p[n] == 0;
		if (enable_controllers(o, dir, err) < 0)
			goto fail;
		size_t dl = strlen(dir);
		if (dl + 1 + n >= sizeof(dir)) {
			err_set(err, JAIL_EXIT_CGROUP, "cgroup path under %s too long", cg->root);
			goto fail;
		}
		snprintf(dir + dl, sizeof(dir) - dl, "/%.*s", (int)n, p);
		if (mkdir(dir, 0755) == 0) {
			if (last)
				cg->created = true;
		} else if (errno != EEXIST) {
			err_set(err, JAIL_EXIT_CGROUP, "create cgroup %s: %s", dir, strerror(errno));
			goto fail;
		}
		p += n + !last;
	}
	snprintf(cg->path, sizeof(cg->path), "%s", dir);
	for (size_t i = 0; i < o->n_cgroups; i++) {
		const struct jail_cgroup_setting *s = &o->cgroups[i];
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", cg->path, s->file);
		if (write_str(path, s->value) < 0) {
			int e = errno;
			if (e == ENOENT)
				err_set(err, JAIL_EXIT_USAGE, "--cgroup '%s=%s': %s has no file '%s'", s->file, s->value,
					cg->path, s->file);
			else if (e == EINVAL || e == ERANGE)
				err_set(err, JAIL_EXIT_USAGE, "--cgroup '%s=%s': the kernel refused the value (%s)",
					s->file, s->value, strerror(e));
			else
				err_set(err, JAIL_EXIT_CGROUP, "write '%s' to %s: %s", s->value, path, strerror(e));
			goto fail;
		}
	}
	return 0;
fail:
	jail_cgroup_abandon(cg);
	return -1;
}

int jail_cgroup_join(const struct jail_cgroup *cg, struct kite_err *err)
{
	if (!cg->used)
		return 0;
	char path[600], pid[24];
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg->path);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (write_str(path, pid) < 0)
		return err_set(err, JAIL_EXIT_CGROUP, "move into cgroup %s: %s", cg->path, strerror(errno));
	return 0;
}

void jail_cgroup_abandon(struct jail_cgroup *cg)
{
	if (cg->created && cg->path[0])
		rmdir(cg->path);
	cg->created = false;
}
