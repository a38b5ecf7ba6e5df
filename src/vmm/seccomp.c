#include "vmm/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#define MAX_FILTER_INSNS 4096 /* BPF_MAXINSNS */

static bool active;

bool seccomp_active(void) { return active; }

/* SIGSYS: one line, then exit. Only async-signal-safe calls (write, _exit). */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char buf[160];
	int nr = si->si_syscall, n = 0;
	const char *pre = "kite: error: seccomp: forbidden system call ";
	for (const char *p = pre; *p && n < (int)sizeof(buf) - 1; p++)
		buf[n++] = *p;
	char digits[12];
	int d = 0;
	unsigned v = nr < 0 ? 0u : (unsigned)nr;
	do {
		digits[d++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && d < 11);
	while (d && n < (int)sizeof(buf) - 40)
		buf[n++] = digits[--d];
	const char *post = " (see `ausyscall` for its name); kite stops\n";
	for (const char *p = post; *p && n < (int)sizeof(buf) - 1; p++)
		buf[n++] = *p;
	ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
	(void)w;
	_exit(KITE_EXIT_SECCOMP);
}

/* The calls the running VMM makes, whatever the thread. */
static const int allowed[] = {
	/* memory and threads already running */
	SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap),
	SCMP_SYS(madvise), SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(tgkill), SCMP_SYS(set_robust_list),
	SCMP_SYS(restart_syscall), SCMP_SYS(rseq), /* a thread created just before still starting */
	/* files and descriptors kite has or reopens (PATCH drive, logs, metrics, stats file) */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
	SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(preadv2), SCMP_SYS(pwritev2),
	SCMP_SYS(close), SCMP_SYS(lseek), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx),
	SCMP_SYS(openat), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fcntl), SCMP_SYS(dup),
	SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(ftruncate), SCMP_SYS(fallocate),
	SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), /* snapshot files, written whole */
	/* event loops, timers, time */
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
	SCMP_SYS(eventfd2), SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime),
	SCMP_SYS(timerfd_gettime), SCMP_SYS(ppoll), SCMP_SYS(poll), SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(getrandom), SCMP_SYS(getrusage),
	SCMP_SYS(sysinfo), /* glibc's qsort asks for the machine's memory size */
	/* sockets: see socket() below for the family */
	SCMP_SYS(accept4), SCMP_SYS(accept), SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen),
	SCMP_SYS(shutdown), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname),
	SCMP_SYS(getpeername), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(recvmsg),
	SCMP_SYS(sendmsg),
	/* virtio-blk's asynchronous I/O */
	SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
};

/* ioctl requests allowed after set-up (arg 1). */
static const unsigned long ioctls[] = {
	KVM_RUN, KVM_IRQ_LINE, KVM_SET_GSI_ROUTING, KVM_IOEVENTFD, KVM_IRQFD, KVM_SIGNAL_MSI,
	KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU, KVM_SET_FPU, KVM_GET_LAPIC,
	KVM_GET_MSRS, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_SET_GUEST_DEBUG,
	KVM_TRANSLATE, KVM_GET_MP_STATE, KVM_GET_CLOCK, KVM_GET_DIRTY_LOG, KVM_KVMCLOCK_CTRL,
	KVM_GET_STATS_FD,
	/* snapshots and migration of a running VM: read its state, track its writes */
	KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_GET_XCRS, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CPUID2,
	KVM_GET_TSC_KHZ, KVM_GET_MSR_INDEX_LIST, KVM_CHECK_EXTENSION, KVM_SET_USER_MEMORY_REGION,
	TUNSETOFFLOAD, TUNSETVNETHDRSZ,
	BLKGETSIZE64, /* PATCH /drives to a block device */
	TCGETS, TCSETS, TCSETSW, TCSETSF, FIONBIO,
};

static int build(scmp_filter_ctx ctx)
{
	int rc = 0;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && rc == 0; i++)
		if (allowed[i] >= 0) /* __NR_* unknown to this libseccomp: skip */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, ioctls[i] & 0xffffffffUL));
	/* Unix sockets (the guest's network goes through TAP) ... */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	/* ... and TCP streams for live migration (the source connects out). */
	for (int fam = 0; fam < 2 && rc == 0; fam++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
				      SCMP_A0(SCMP_CMP_EQ, fam ? AF_INET6 : AF_INET),
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
	/* Threads created just before the filter name themselves as they start. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
	return rc;
}

int seccomp_check_file(const char *path, struct kite_err *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return err_set(err, KITE_EXIT_USAGE, "--seccomp-filter '%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size % sizeof(struct sock_filter) ||
	    st.st_size / (off_t)sizeof(struct sock_filter) > MAX_FILTER_INSNS)
		return err_set(err, KITE_EXIT_USAGE,
			       "--seccomp-filter '%s': expected a BPF program of 1-%d instructions of 8 bytes",
			       path, MAX_FILTER_INSNS);
	return 0;
}

/* The program to install, made ahead of seccomp_lockdown by seccomp_prepare. */
static struct sock_filter *prog;
static unsigned short prog_len;

static int read_file(const char *path, struct kite_err *err)
{
	if (seccomp_check_file(path, err) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, KITE_EXIT_ERROR, "--seccomp-filter '%s': %s", path, strerror(errno));
	struct stat st;
	fstat(fd, &st);
	prog = malloc((size_t)st.st_size);
	ssize_t n = prog ? read(fd, prog, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(prog);
		prog = NULL;
		return err_set(err, KITE_EXIT_ERROR, "--seccomp-filter '%s': short read", path);
	}
	prog_len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	return 0;
}

/* kite's allowlist, compiled by libseccomp into a classic-BPF program. */
static int compile(struct kite_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(getenv("KITE_SECCOMP_LOG") ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx)
		return err_set(err, KITE_EXIT_ERROR, "seccomp: cannot create a filter");
	int rc = build(ctx);
	/* The hot path is one ioctl (KVM_RUN) per exit: test it first, and let
	 * libseccomp lay the rest out as a binary tree, not a list. */
	if (rc == 0)
		rc = seccomp_syscall_priority(ctx, SCMP_SYS(ioctl), 255);
	if (rc == 0 && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) != 0)
		log_debug("seccomp: no binary-tree layout in this libseccomp");
	int mfd = rc == 0 ? memfd_create("kite-seccomp", MFD_CLOEXEC) : -1;
	if (rc == 0 && mfd < 0)
		rc = -errno;
	if (rc == 0)
		rc = seccomp_export_bpf(ctx, mfd);
	seccomp_release(ctx);
	off_t len = rc == 0 ? lseek(mfd, 0, SEEK_END) : 0;
	if (rc == 0 && (len <= 0 || len % (off_t)sizeof(struct sock_filter) ||
			len / (off_t)sizeof(struct sock_filter) > MAX_FILTER_INSNS))
		rc = -EINVAL;
	if (rc == 0 && !(prog = malloc((size_t)len)))
		rc = -ENOMEM;
	if (rc == 0 && pread(mfd, prog, (size_t)len, 0) != len)
		rc = -EIO;
	if (mfd >= 0)
		close(mfd);
	if (rc != 0) {
		free(prog);
		prog = NULL;
		return err_set(err, KITE_EXIT_ERROR, "seccomp: building the filter failed: %s", strerror(-rc));
	}
	prog_len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
	return 0;
}

int seccomp_prepare(const struct seccomp_opts *o, struct kite_err *err)
{
	if (o->mode == SECCOMP_OFF || prog)
		return 0;
	return o->mode == SECCOMP_FILE ? read_file(o->file, err) : compile(err);
}

int seccomp_lockdown(const struct seccomp_opts *o, struct kite_err *err)
{
	if (o->mode == SECCOMP_OFF)
		return 0;
	if (seccomp_prepare(o, err) < 0)
		return -1;
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_set(err, KITE_EXIT_ERROR, "seccomp: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	/* Every thread at once: none runs a moment unfiltered. */
	struct sock_fprog fp = {.len = prog_len, .filter = prog};
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fp);
	int e = errno;
	free(prog);
	prog = NULL;
	if (r != 0) {
		const char *why = r > 0 ? "a thread could not take it" : strerror(e);
		if (o->mode == SECCOMP_FILE)
			return err_set(err, KITE_EXIT_ERROR, "--seccomp-filter '%s': the kernel refused it: %s", o->file,
				       why);
		return err_set(err, KITE_EXIT_ERROR, "seccomp: installing the filter failed: %s", why);
	}
	active = true;
	log_debug("seccomp: filter installed on every thread");
	return 0;
}
