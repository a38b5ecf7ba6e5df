/* vbench: the guest- and host-side halves of the virtio benchmarks
 * (bench/lab-virtio.sh), static so it runs in the lab's outer VM and in the inner
 * busybox guest alike.
 *
 *   vbench seqread DEV MIB          O_DIRECT 1 MiB reads of the first MIB MiB
 *   vbench seqwrite DEV MIB         O_DIRECT 1 MiB writes, then fdatasync
 *   vbench randread DEV SECS        O_DIRECT 4 KiB reads at random aligned offsets
 *                                   (queue depth 1) for SECS seconds
 *   vbench recv PORT                accepts one TCP connection, reads to EOF
 *   vbench send HOST PORT MIB       connects and sends MIB MiB
 * Each prints one line "VBENCH KIND BYTES OPS SECONDS" (send/recv: the time from
 * the first to the last byte on that side). Exit 1 on any error. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "vbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *aligned(size_t n)
{
	void *p;
	if (posix_memalign(&p, 4096, n))
		die("posix_memalign");
	memset(p, 0x5a, n);
	return p;
}

static void report(const char *kind, uint64_t bytes, uint64_t ops, double secs)
{
	printf("VBENCH %s %llu %llu %.6f\n", kind, (unsigned long long)bytes, (unsigned long long)ops, secs);
}

static int seq(const char *dev, long mib, int wr)
{
	int fd = open(dev, (wr ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0)
		die(dev);
	char *buf = aligned(MIB);
	double t0 = now();
	for (long i = 0; i < mib; i++) {
		ssize_t r = wr ? pwrite(fd, buf, MIB, (off_t)i * MIB) : pread(fd, buf, MIB, (off_t)i * MIB);
		if (r != MIB)
			die(wr ? "pwrite" : "pread");
	}
	if (wr && fdatasync(fd) < 0)
		die("fdatasync");
	report(wr ? "seqwrite" : "seqread", (uint64_t)mib * MIB, (uint64_t)mib, now() - t0);
	return 0;
}

static int randread(const char *dev, double secs)
{
	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0)
		die(dev);
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 4096)
		die("device size");
	char *buf = aligned(4096);
	uint64_t blocks = (uint64_t)size / 4096, ops = 0, x = 88172645463325252ull;
	double t0 = now(), t;
	do {
		for (int k = 0; k < 64; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
			if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096)
				die("pread");
			ops++;
		}
		t = now() - t0;
	} while (t < secs);
	report("randread", ops * 4096, ops, t);
	return 0;
}

static int recv_one(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0)
		die("bind/listen");
	printf("VBENCH listening %d\n", port);
	fflush(stdout);
	int c = accept(s, NULL, NULL);
	if (c < 0)
		die("accept");
	char *buf = malloc(MIB);
	uint64_t bytes = 0;
	double t0 = 0, t1 = 0;
	for (;;) {
		ssize_t r = read(c, buf, MIB);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			break;
		if (!bytes)
			t0 = now();
		bytes += (uint64_t)r;
		t1 = now();
	}
	report("recv", bytes, 0, t1 - t0);
	return 0;
}

static int send_to(const char *host, int port, long mib)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		die("address");
	for (int i = 0; connect(s, (struct sockaddr *)&a, sizeof(a)) < 0; i++) {
		if (i == 300)
			die("connect");
		close(s);
		s = socket(AF_INET, SOCK_STREAM, 0);
		usleep(100000);
	}
	char *buf = aligned(MIB);
	double t0 = now();
	for (long i = 0; i < mib; i++) {
		size_t off = 0;
		while (off < MIB) {
			ssize_t w = write(s, buf + off, MIB - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				die("write");
			off += (size_t)w;
		}
	}
	shutdown(s, SHUT_WR);
	char b;
	while (read(s, &b, 1) > 0)
		;
	report("send", (uint64_t)mib * MIB, 0, now() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "seqread"))
		return seq(argv[2], atol(argv[3]), 0);
	if (argc == 4 && !strcmp(argv[1], "seqwrite"))
		return seq(argv[2], atol(argv[3]), 1);
	if (argc == 4 && !strcmp(argv[1], "randread"))
		return randread(argv[2], atof(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "recv"))
		return recv_one(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "send"))
		return send_to(argv[2], atoi(argv[3]), atol(argv[4]));
	fprintf(stderr, "usage: vbench seqread|seqwrite DEV MIB | randread DEV SECS | recv PORT | send HOST PORT MIB\n");
	return 2;
}
