/* seccomp-bpf: after set-up kite can do almost nothing.
 *
 * Once the VM is built (guest RAM mapped, devices and vCPU threads created),
 * seccomp_lockdown() installs one allowlist with libseccomp on every thread of
 * the process at once (SECCOMP_FILTER_FLAG_TSYNC): the system calls the running
 * VMM needs, with arguments narrowed where they matter (sockets only AF_UNIX,
 * no new processes or threads, no exec, mount, ptrace, bpf...). Anything else
 * raises SIGSYS; kite's handler writes one line naming the call and exits with
 * KITE_EXIT_SECCOMP (148, Firecracker's code for a bad system call).
 *
 * --no-seccomp skips it; --seccomp-filter FILE installs FILE instead: a raw
 * classic-BPF program (struct sock_filter array) for every thread. */
#ifndef KITE_SECCOMP_H
#define KITE_SECCOMP_H

#include <stdbool.h>

#include "util/log.h"

#define KITE_EXIT_SECCOMP 148

enum seccomp_mode { SECCOMP_DEFAULT, SECCOMP_OFF, SECCOMP_FILE };

struct seccomp_opts {
	enum seccomp_mode mode;
	const char *file; /* SECCOMP_FILE */
};

/* Reads and checks a --seccomp-filter file early (before the VM exists), so a
 * bad file is a usage-time error. 0 or -1 with err set (KITE_EXIT_USAGE). */
int seccomp_check_file(const char *path, struct kite_err *err);
/* Makes the program to install (libseccomp compiles the allowlist, or the
 * --seccomp-filter file is read) ahead of seccomp_lockdown, so that a migration's
 * destination does it before its pause. 0 or -1 with err set. */
int seccomp_prepare(const struct seccomp_opts *o, struct kite_err *err);
/* Installs the filter (prepared first if it was not) on every thread. 0 or -1
 * with err set. */
int seccomp_lockdown(const struct seccomp_opts *o, struct kite_err *err);
/* Whether a filter is in force (for /stats and logs). */
bool seccomp_active(void);

#endif
