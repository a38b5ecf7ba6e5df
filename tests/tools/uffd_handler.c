/* A page server for kite's Uffd snapshot memory backend, speaking Firecracker's
 * handler protocol, for tests/integration/test_snapshot.py.
 *
 *   uffd-handler SOCKET MEMFILE
 *
 * Listens on SOCKET and takes one connection: a JSON array of mappings
 * ({"base_host_virt_addr", "size", "offset", "page_size"}) with the VMM's
 * userfaultfd attached (SCM_RIGHTS). Maps MEMFILE and answers every missing-page
 * fault with UFFDIO_COPY of that page from the file. Prints "uffd-handler: ready"
 * once it has the descriptor and "uffd-handler: served N pages" on SIGTERM (or
 * when the descriptor reports an error). */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS 8

struct region {
	uint64_t base, size, offset;
};

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int number_after(const char **p, const char *key, uint64_t *v)
{
	const char *k = strstr(*p, key);
	if (!k)
		return -1;
	k = strchr(k + strlen(key), ':');
	if (!k)
		return -1;
	char *end;
	*v = strtoull(k + 1, &end, 10);
	*p = end;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: uffd-handler SOCKET MEMFILE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGTERM, on_term);
	int mfd = open(argv[2], O_RDONLY);
	struct stat st;
	if (mfd < 0 || fstat(mfd, &st) < 0) {
		perror(argv[2]);
		return 1;
	}
	uint8_t *file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
	if (file == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	unlink(argv[1]);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0) {
		perror(argv[1]);
		return 1;
	}
	int c = accept(ls, NULL, NULL);
	if (c < 0) {
		perror("accept");
		return 1;
	}
	char json[4096];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = json, .iov_len = sizeof(json) - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	ssize_t n = recvmsg(c, &mh, 0);
	struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (!cm || cm->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "uffd-handler: no descriptor in the message\n");
		return 1;
	}
	json[n] = 0;
	int uffd;
	memcpy(&uffd, CMSG_DATA(cm), sizeof(int));
	struct region r[MAX_REGIONS];
	unsigned nr = 0;
	const char *p = json;
	while (nr < MAX_REGIONS && number_after(&p, "\"base_host_virt_addr\"", &r[nr].base) == 0 &&
	       number_after(&p, "\"size\"", &r[nr].size) == 0 && number_after(&p, "\"offset\"", &r[nr].offset) == 0)
		nr++;
	if (!nr) {
		fprintf(stderr, "uffd-handler: no mappings in '%s'\n", json);
		return 1;
	}
	printf("uffd-handler: ready, %u regions\n", nr);
	unsigned long served = 0;
	while (!stop) {
		struct pollfd pf = {.fd = uffd, .events = POLLIN};
		int pr = poll(&pf, 1, 200);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0 || (pf.revents & (POLLHUP | POLLERR)))
			break;
		if (pr == 0)
			continue;
		struct uffd_msg m;
		ssize_t got = read(uffd, &m, sizeof(m));
		if (got == 0)
			break;
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = m.arg.pagefault.address & ~4095ULL;
		for (unsigned i = 0; i < nr; i++) {
			if (addr < r[i].base || addr - r[i].base >= r[i].size)
				continue;
			uint64_t off = r[i].offset + (addr - r[i].base);
			if (off + 4096 > (uint64_t)st.st_size)
				break;
			struct uffdio_copy cp = {.dst = addr, .src = (uint64_t)(uintptr_t)(file + off), .len = 4096};
			if (ioctl(uffd, UFFDIO_COPY, &cp) == 0)
				served++;
			else if (errno != EEXIST)
				fprintf(stderr, "uffd-handler: UFFDIO_COPY at 0x%llx: %s\n", (unsigned long long)addr,
					strerror(errno));
			break;
		}
	}
	printf("uffd-handler: served %lu pages\n", served);
	return 0;
}
