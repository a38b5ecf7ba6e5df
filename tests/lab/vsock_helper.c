/* The lab's vsock peers, one static binary for both ends (busybox has no vsock):
 *
 *   guest-connect PORT NAME       in the inner guest: AF_VSOCK to the host (CID 2)
 *   guest-listen PORT             in the inner guest: serve one AF_VSOCK connection
 *   host-listen PATH              in the outer VM: serve one connection on the Unix
 *                                 socket PATH (kite's <uds>_<port>); returns once
 *                                 listening, the serving child goes on
 *   host-connect UDS PORT NAME N  in the outer VM: "CONNECT PORT\n" on kite's uds,
 *                                 up to N tries a second apart (the guest may not
 *                                 listen yet)
 *
 * A client sends "NAME\n", then BULK pattern bytes, then shuts its sending side
 * and prints the server's one-line answer; a server reads to EOF and answers
 * "<NAME> bytes=<n> pattern=ok|bad". Marker lines: "KITE-GUEST: vsock ..." in
 * the guest, "HOST: ..." in the outer VM. */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BULK (1u << 20)

static const char *tag = "HOST:";

static unsigned char pattern(size_t i) { return (unsigned char)(i % 251); }

static int send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One line, a byte at a time (nothing after it is consumed); -1 at EOF first. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = recv(fd, &c, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}

static int client(int fd, const char *name)
{
	static unsigned char bulk[BULK];
	for (size_t i = 0; i < BULK; i++)
		bulk[i] = pattern(i);
	char line[256];
	snprintf(line, sizeof(line), "%s\n", name);
	if (send_all(fd, line, strlen(line)) < 0 || send_all(fd, bulk, BULK) < 0) {
		printf("%s send failed: %s\n", tag, strerror(errno));
		return 1;
	}
	shutdown(fd, SHUT_WR);
	if (read_line(fd, line, sizeof(line)) < 0) {
		printf("%s no reply\n", tag);
		return 1;
	}
	char rest;
	ssize_t eof = recv(fd, &rest, 1, 0);
	printf("%s reply %s eof=%s\n", tag, line, eof == 0 ? "yes" : "no");
	return 0;
}

static int serve(int fd)
{
	char name[200];
	if (read_line(fd, name, sizeof(name)) < 0) {
		printf("%s no request line\n", tag);
		return 1;
	}
	static unsigned char buf[65536];
	size_t total = 0;
	int ok = 1;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			printf("%s recv: %s\n", tag, strerror(errno));
			return 1;
		}
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(total + (size_t)i))
				ok = 0;
		total += (size_t)r;
	}
	char answer[256];
	snprintf(answer, sizeof(answer), "%s bytes=%zu pattern=%s", name, total, ok ? "ok" : "bad");
	printf("%s served %s\n", tag, answer);
	strcat(answer, "\n");
	return send_all(fd, answer, strlen(answer)) < 0;
}

static struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	return sa;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "guest-connect")) {
		tag = "KITE-GUEST: vsock";
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
					 .svm_port = (unsigned)atoi(argv[2])};
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			printf("%s connect failed: %s\n", tag, strerror(errno));
			return 1;
		}
		return client(fd, argv[3]);
	}
	if (argc == 3 && !strcmp(argv[1], "guest-listen")) {
		tag = "KITE-GUEST: vsock";
		int l = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					 .svm_port = (unsigned)atoi(argv[2])};
		if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0) {
			printf("%s listen failed: %s\n", tag, strerror(errno));
			return 1;
		}
		printf("%s listening %s\n", tag, argv[2]);
		int fd = accept(l, NULL, NULL);
		if (fd < 0) {
			printf("%s accept failed: %s\n", tag, strerror(errno));
			return 1;
		}
		return serve(fd);
	}
	if (argc == 3 && !strcmp(argv[1], "host-listen")) {
		int l = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = unix_addr(argv[2]);
		unlink(argv[2]);
		if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0) {
			printf("%s listen failed: %s\n", tag, strerror(errno));
			return 1;
		}
		fflush(stdout);
		if (fork() != 0)
			return 0; /* listening: the caller goes on */
		int fd = accept(l, NULL, NULL);
		if (fd < 0) {
			printf("%s accept failed: %s\n", tag, strerror(errno));
			return 1;
		}
		return serve(fd);
	}
	if (argc == 6 && !strcmp(argv[1], "host-connect")) {
		struct sockaddr_un sa = unix_addr(argv[2]);
		int tries = atoi(argv[5]);
		for (int t = 1; t <= tries; t++) {
			if (t > 1)
				sleep(1);
			int fd = socket(AF_UNIX, SOCK_STREAM, 0);
			if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
				close(fd);
				continue;
			}
			char line[64];
			snprintf(line, sizeof(line), "CONNECT %s\n", argv[3]);
			if (send_all(fd, line, strlen(line)) < 0 || read_line(fd, line, sizeof(line)) < 0) {
				close(fd); /* nobody listens in the guest yet: kite closed us */
				continue;
			}
			printf("%s handshake '%s' after %d tries\n", tag, line, t);
			if (strncmp(line, "OK ", 3))
				return 1;
			return client(fd, argv[4]);
		}
		printf("%s connect gave up after %d tries\n", tag, tries);
		return 1;
	}
	fprintf(stderr, "usage: see the comment at the top of vsock_helper.c\n");
	return 2;
}
