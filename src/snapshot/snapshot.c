/* Snapshot create and restore (snapshot.h). */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/device.h"
#include "snapshot/vmstate.h"
#include "virtio/virtio.h"

#define CONFIG_MAX (1u << 20)

/* ---- guest memory ---- */

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* KVM's dirty log of every memslot (read and cleared) into bitmap, bit i being
 * page i of RAM in the host mapping's order. */
int snapshot_dirty_log(struct vm *vm, uint64_t *bitmap, struct kite_err *err)
{
	for (int s = 0; s < vm->mem.nr_regions; s++) {
		const struct gmem_region *r = &vm->mem.region[s];
		uint64_t pages = r->size / GMEM_PAGE;
		size_t words = (size_t)((pages + 63) / 64);
		uint64_t *b = calloc(words ? words : 1, sizeof(uint64_t));
		if (!b)
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		struct kvm_dirty_log log = {.slot = (uint32_t)s, .dirty_bitmap = b};
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			free(b);
			return err_set(err, KITE_EXIT_KVM, "KVM_GET_DIRTY_LOG: %s", strerror(errno));
		}
		uint64_t first = (uint64_t)(r->hva - vm->mem.base) / GMEM_PAGE;
		for (uint64_t p = 0; p < pages; p++)
			if (b[p / 64] >> (p % 64) & 1)
				bitmap[(first + p) / 64] |= 1ULL << ((first + p) % 64);
		free(b);
	}
	return 0;
}

/* Writes the memory file beside path, then renames it over path. */
static int write_memory(struct vm *vm, const char *path, bool diff, struct kite_err *err)
{
	const struct gmem *m = &vm->mem;
	uint64_t pages = m->ram_size / GMEM_PAGE;
	size_t words = (size_t)((pages + 63) / 64);
	uint64_t *dirty = NULL;
	if (vm->cfg->track_dirty) {
		/* Read (and clear) the logs for a full snapshot too: a diff after it
		 * then holds only what changed since. */
		dirty = calloc(words ? words : 1, sizeof(uint64_t));
		if (!dirty)
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		if (snapshot_dirty_log(vm, dirty, err) < 0) {
			free(dirty);
			return -1;
		}
		gmem_collect_dirty(&vm->mem, dirty);
	}
	uint64_t *want = dirty;
	if (!diff) {
		/* Full: every page that is not zero (zero pages stay holes). */
		want = calloc(words ? words : 1, sizeof(uint64_t));
		if (!want) {
			free(dirty);
			return err_set(err, KITE_EXIT_ERROR, "out of memory");
		}
		gmem_nonzero(m, want);
		free(dirty);
		dirty = want;
	}
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		free(dirty);
		return err_set(err, KITE_EXIT_USAGE, "memory file '%s': path too long", path);
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(dirty);
		return err_set(err, KITE_EXIT_ERROR, "memory file '%s': %s", path, strerror(errno));
	}
	int rc = ftruncate(fd, (off_t)m->ram_size);
	uint64_t written = 0;
	for (uint64_t p = 0; p < pages && rc == 0;) {
		if (!(dirty[p / 64] >> (p % 64) & 1)) {
			p++;
			continue;
		}
		uint64_t q = p + 1; /* one write per run of pages */
		while (q < pages && q - p < 256 && (dirty[q / 64] >> (q % 64) & 1))
			q++;
		rc = write_all(fd, m->base + p * GMEM_PAGE, (size_t)((q - p) * GMEM_PAGE), p * GMEM_PAGE);
		written += q - p;
		p = q;
	}
	if (rc == 0)
		rc = fsync(fd);
	int e = errno;
	if (close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc == 0 && rename(tmp, path) < 0) {
		rc = -1;
		e = errno;
	}
	free(dirty);
	if (rc < 0) {
		unlink(tmp);
		return err_set(err, KITE_EXIT_ERROR, "memory file '%s': %s", path, strerror(e));
	}
	log_info("snapshot: %s memory: %llu of %llu pages written to '%s'", diff ? "diff" : "full",
		 (unsigned long long)written, (unsigned long long)pages, path);
	return 0;
}

int snapshot_create(struct vm *vm, const char *config_json, const char *state_path,
		    const char *mem_path, bool diff, struct kite_err *err)
{
	if (diff && !vm->cfg->track_dirty)
		return err_set(err, KITE_EXIT_USAGE,
			       "a diff snapshot needs dirty page tracking (machine-config track_dirty_pages)");
	struct snap_writer w;
	snapw_init(&w);
	snapw_section(&w, "CONF", 0, config_json, strlen(config_json));
	snapw_begin(&w, "MEMS", 0);
	snapw_u64(&w, vm->mem.ram_size);
	snapw_u32(&w, GMEM_PAGE);
	snapw_u8(&w, diff);
	snapw_end(&w);
	/* Devices first: settling what is in flight may still write guest memory
	 * and raise interrupts, which the vCPU, irqchip and memory saves then see. */
	virtio_quiesce_all(vm);
	int rc = vmstate_save(vm, &w, err);
	if (rc == 0)
		rc = devices_save(vm, &w, err);
	/* Memory first: the state file names a memory that exists. */
	if (rc == 0)
		rc = write_memory(vm, mem_path, diff, err);
	if (rc == 0)
		rc = snapw_write_file(&w, state_path, err);
	virtio_resume_all(vm);
	snapw_free(&w);
	return rc;
}

int snapshot_open(const char *state_path, struct snap_reader *r, char **config_json,
		  uint64_t *mem_bytes, struct kite_err *err)
{
	if (snapr_open_file(r, state_path, err) < 0)
		return -1;
	struct snap_cursor c;
	if (!snapr_find(r, "CONF", 0, &c) || c.len == 0 || c.len > CONFIG_MAX) {
		snapr_free(r);
		return err_set(err, KITE_EXIT_IMAGE, "snapshot '%s': no VM configuration in it", state_path);
	}
	char *conf = malloc(c.len + 1);
	if (!conf) {
		snapr_free(r);
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	}
	snapc_bytes(&c, conf, c.len);
	conf[c.len] = 0;
	if (!snapr_find(r, "MEMS", 0, &c)) {
		free(conf);
		snapr_free(r);
		return err_set(err, KITE_EXIT_IMAGE, "snapshot '%s': no memory description in it", state_path);
	}
	uint64_t bytes = snapc_u64(&c);
	uint32_t page = snapc_u32(&c);
	snapc_u8(&c);
	if (!snapc_done(&c) || page != GMEM_PAGE || bytes == 0 || bytes % (1u << 20)) {
		free(conf);
		snapr_free(r);
		return err_set(err, KITE_EXIT_IMAGE, "snapshot '%s': its memory description is malformed",
			       state_path);
	}
	*config_json = conf;
	*mem_bytes = bytes;
	return 0;
}

int snapshot_open_mem(const char *mem_path, uint64_t mem_bytes, struct kite_err *err)
{
	int fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, KITE_EXIT_IMAGE, "memory file '%s': %s", mem_path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "memory file '%s': not a regular file", mem_path);
	}
	if ((uint64_t)st.st_size != mem_bytes) {
		close(fd);
		return err_set(err, KITE_EXIT_IMAGE, "memory file '%s' is %lld bytes; the snapshot's guest has %llu",
			       mem_path, (long long)st.st_size, (unsigned long long)mem_bytes);
	}
	return fd;
}

int snapshot_uffd_memory(const char *uds, uint64_t bytes, void **base_out, int *uffd_out, struct kite_err *err)
{
	void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return err_set(err, KITE_EXIT_ERROR, "cannot map %llu MiB of guest memory: %s",
			       (unsigned long long)(bytes >> 20), strerror(errno));
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int sock = -1;
	const char *what = "userfaultfd";
	if (uffd < 0)
		goto fail;
	struct uffdio_api api = {.api = UFFD_API};
	what = "UFFDIO_API";
	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		goto fail;
	struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)base, .len = bytes},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	what = "UFFDIO_REGISTER";
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		goto fail;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(uds) >= sizeof(sa.sun_path)) {
		munmap(base, bytes);
		close(uffd);
		return err_set(err, KITE_EXIT_USAGE, "Uffd handler socket '%s': path too long", uds);
	}
	strcpy(sa.sun_path, uds);
	what = "connect to the Uffd handler";
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	/* Firecracker's message: one mapping per memory region (host address, size,
	 * offset in the memory file, page size), the userfaultfd attached. */
	char msg[512];
	uint64_t low = bytes < LAYOUT_MMIO_HOLE_START ? bytes : LAYOUT_MMIO_HOLE_START;
	int n = snprintf(msg, sizeof(msg),
			 "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0,\"page_size\":%u,"
			 "\"page_size_kib\":%u}",
			 (unsigned long long)(uintptr_t)base, (unsigned long long)low, GMEM_PAGE, GMEM_PAGE / 1024);
	if (bytes > low)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n,
			      ",{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,\"page_size\":%u,"
			      "\"page_size_kib\":%u}",
			      (unsigned long long)(uintptr_t)base + low, (unsigned long long)(bytes - low),
			      (unsigned long long)low, GMEM_PAGE, GMEM_PAGE / 1024);
	n += snprintf(msg + n, sizeof(msg) - (size_t)n, "]");
	struct iovec iov = {.iov_base = msg, .iov_len = (size_t)n};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	what = "send the mappings to the Uffd handler";
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != n)
		goto fail;
	close(sock); /* the handler has what it needs; it serves faults from now on */
	*base_out = base;
	*uffd_out = uffd;
	return 0;
fail:;
	int e = errno;
	if (sock >= 0)
		close(sock);
	if (uffd >= 0)
		close(uffd);
	munmap(base, bytes);
	return err_set(err, KITE_EXIT_ERROR, "Uffd backend '%s': %s: %s", uds, what, strerror(e));
}

int snapshot_restore(struct vm *vm, struct kite_err *err)
{
	const struct snap_reader *r = vm->cfg->restore;
	if (vmstate_restore(vm, r, vm->cfg->restore_clock_realtime, err) < 0)
		return -1;
	return devices_restore(vm, r, err);
}

/* ---- kite snapshot-fold ---- */

static int fold(const char *base, const char *diff)
{
	int d = open(diff, O_RDONLY | O_CLOEXEC);
	if (d < 0) {
		fprintf(stderr, "kite: error: diff memory file '%s': %s\n", diff, strerror(errno));
		return KITE_EXIT_IMAGE;
	}
	int b = open(base, O_WRONLY | O_CLOEXEC);
	if (b < 0) {
		fprintf(stderr, "kite: error: base memory file '%s': %s\n", base, strerror(errno));
		close(d);
		return KITE_EXIT_IMAGE;
	}
	struct stat sd, sb;
	int code = KITE_EXIT_OK;
	if (fstat(d, &sd) < 0 || fstat(b, &sb) < 0 || !S_ISREG(sd.st_mode) || !S_ISREG(sb.st_mode)) {
		fprintf(stderr, "kite: error: '%s' and '%s' must be regular files\n", base, diff);
		code = KITE_EXIT_IMAGE;
	} else if (sd.st_size != sb.st_size) {
		fprintf(stderr, "kite: error: diff '%s' is %lld bytes, base '%s' %lld: not the same guest\n", diff,
			(long long)sd.st_size, base, (long long)sb.st_size);
		code = KITE_EXIT_IMAGE;
	} else if (sd.st_dev == sb.st_dev && sd.st_ino == sb.st_ino) {
		fprintf(stderr, "kite: error: '%s' and '%s' are the same file\n", base, diff);
		code = KITE_EXIT_USAGE;
	}
	static uint8_t buf[1 << 20];
	off_t off = 0, end = sd.st_size;
	uint64_t copied = 0;
	/* The diff's data extents are its pages; its holes are pages it does not hold. */
	while (code == KITE_EXIT_OK && off < end) {
		off_t data = lseek(d, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		off_t hole = data < 0 ? -1 : lseek(d, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			fprintf(stderr, "kite: error: diff '%s': %s\n", diff, strerror(errno));
			code = KITE_EXIT_ERROR;
			break;
		}
		for (off_t o = data; o < hole && code == KITE_EXIT_OK;) {
			size_t n = (size_t)(hole - o) < sizeof(buf) ? (size_t)(hole - o) : sizeof(buf);
			ssize_t got = pread(d, buf, n, o);
			if (got <= 0 || write_all(b, buf, (size_t)got, (uint64_t)o) < 0) {
				fprintf(stderr, "kite: error: folding '%s' onto '%s': %s\n", diff, base,
					got < 0 || got > 0 ? strerror(errno) : "short read");
				code = KITE_EXIT_ERROR;
				break;
			}
			o += got;
			copied += (uint64_t)got;
		}
		off = hole;
	}
	if (code == KITE_EXIT_OK && fsync(b) < 0) {
		fprintf(stderr, "kite: error: base memory file '%s': %s\n", base, strerror(errno));
		code = KITE_EXIT_ERROR;
	}
	close(b);
	close(d);
	if (code == KITE_EXIT_OK)
		fprintf(stderr, "kite: folded %llu KiB of '%s' onto '%s'\n", (unsigned long long)(copied >> 10),
			diff, base);
	return code;
}

int snapshot_fold_main(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: kite snapshot-fold BASE_MEM DIFF_MEM\n"
		       "Copies the pages of a diff snapshot's memory file onto the memory file of the\n"
		       "snapshot it was taken after; BASE_MEM then goes with the diff's state file.\n");
		return KITE_EXIT_OK;
	}
	if (argc != 3) {
		fprintf(stderr, "kite: error: snapshot-fold takes two memory files: BASE_MEM DIFF_MEM\n");
		return KITE_EXIT_USAGE;
	}
	return fold(argv[1], argv[2]);
}
