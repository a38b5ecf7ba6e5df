/* apiclient: time a VMM's control socket from the outside.
 *
 *   apiclient up [-q] [-t SECS] [-i POLL_US] [-o LOG] -s SOCK -- CMD [ARG]...
 *   apiclient lat [-q] [-n N] [-w WARMUP] [-c] [-g PATH] [-o SAMPLES] -s SOCK
 *   apiclient serve -s SOCK
 *
 * up: takes a CLOCK_MONOTONIC timestamp, spawns CMD (posix_spawn, stdin /dev/null,
 *   stdout and stderr to LOG, default discarded), then tries connect() on the Unix
 *   socket SOCK every POLL_US microseconds (default 50; timer slack set to 1 ns) until
 *   it succeeds. At that moment it reads CMD's CPU time, then waits for the first
 *   answer on that connection: with -q the QMP greeting line, else the response to
 *   `GET /` (which must be 200). Then SIGTERM, and wait4. One line each on stdout:
 *     AC connect US           exec -> the first successful connect(), from just before
 *                             the spawn (so fork/exec and dynamic linking included)
 *     AC tries N              connect() attempts it took
 *     AC cpu_stat US          CMD's utime + stime from /proc/PID/stat at that moment
 *                             (all threads), clock ticks shown in us: 10 ms resolution
 *                             at USER_HZ 100
 *     AC cpu_sched US         the same moment from /proc/PID/task/ * /schedstat (time on
 *                             CPU of each live thread, ns resolution), or "-"
 *     AC reply US             exec -> the first answer read in full
 *     AC exit US STATUS       SIGTERM -> reaped, and how it ended: exit code or "sig N"
 *     AC cpu USER SYS         CMD's whole CPU time to its exit (wait4 rusage), in us
 *   Exit status 0 when CMD answered, 1 on timeout (-t, default 10 s) or if CMD died
 *   first (the line "AC died STATUS" says how), 2 on usage.
 *
 * lat: one connection to SOCK (retried for up to 5 s until it succeeds), WARMUP (default 50) untimed requests, then N (default
 *   2000) timed ones of each kind, each one sent in one write and its response read in
 *   full before the next (HTTP/1.1 keep-alive: status line and Content-Length parsed):
 *     get     GET / (expects 200)
 *     put     PUT /machine-config {"vcpu_count": 2, "mem_size_mib": 256} (expects 204)
 *     newconn (with -c) connect + GET / + close, N times
 *   With -g PATH, only N timed `GET PATH` (expects 200), reported as kind "getpath"
 *   (kite's GET /stats, for instance: bench/statscost.sh).
 *   With -q, QMP instead: greeting, qmp_capabilities, then
 *     qmp     {"execute": "query-status"} (expects a "return"; event lines skipped)
 *   Prints "AC lat KIND N MEDIAN P99 MIN MAX" (us, p99 nearest-rank); with -o appends
 *   every sample as "KIND US" to SAMPLES.
 *
 * serve: the floor to compare against: binds and listens on SOCK, then answers every
 *   HTTP request on one connection at a time (GET: 200 with "{}", others: 204), a
 *   single thread, static, nothing parsed beyond the headers' end and Content-Length.
 *   Runs until killed.
 *
 * Written for bench/api.sh. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define BUF 65536

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: apiclient up [-q] [-t SECS] [-i POLL_US] [-o LOG] -s SOCK -- CMD [ARG]...\n"
		"       apiclient lat [-q] [-n N] [-w WARMUP] [-c] [-g PATH] [-o SAMPLES] -s SOCK\n"
		"       apiclient serve -s SOCK\n");
	exit(2);
}

static void die(const char *what)
{
	fprintf(stderr, "apiclient: %s: %s\n", what, errno ? strerror(errno) : "unexpected answer");
	exit(1);
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "apiclient: socket path too long: %s\n", path);
		exit(2);
	}
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* One connect() attempt; the fd, or -1. */
static int try_connect(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return fd;
	close(fd);
	return -1;
}

static int connect_or_die(const char *path)
{
	struct sockaddr_un sa;
	sock_addr(path, &sa);
	int fd = try_connect(&sa);
	if (fd < 0)
		die(path);
	return fd;
}

/* ---- a connection with a read buffer ---- */

struct conn {
	int fd;
	size_t len;
	char buf[BUF];
};

static int fill(struct conn *c)
{
	if (c->len == sizeof(c->buf)) {
		errno = EMSGSIZE;
		return -1;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ECONNRESET;
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
		return 0;
	}
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static int send_some(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void send_all(int fd, const char *p, size_t len)
{
	if (send_some(fd, p, len) < 0)
		die("send");
}

/* Reads one HTTP message (request or response) in full: the headers up to the empty
 * line, then Content-Length bytes of body. Returns the header block's first line in
 * *first (NUL-terminated copy, at most 63 chars) and consumes the message. */
static int http_message(struct conn *c, char *first, size_t first_sz)
{
	char *end;
	while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
		if (fill(c) < 0)
			return -1;
	size_t hlen = (size_t)(end - c->buf) + 4;
	size_t clen = 0;
	char *eol = memmem(c->buf, hlen, "\r\n", 2);
	size_t fl = (size_t)(eol - c->buf) < first_sz - 1 ? (size_t)(eol - c->buf) : first_sz - 1;
	memcpy(first, c->buf, fl);
	first[fl] = 0;
	for (char *p = eol + 2; p < end; ) {
		char *q = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if (!strncasecmp(p, "Content-Length:", 15))
			clen = strtoul(p + 15, NULL, 10);
		p = q + 2;
	}
	if (clen > sizeof(c->buf) - hlen) {
		errno = EMSGSIZE;
		return -1;
	}
	while (c->len < hlen + clen)
		if (fill(c) < 0)
			return -1;
	consume(c, hlen + clen);
	return 0;
}

/* Sends REQ and reads the response; returns its status code or -1. */
static int http_roundtrip(struct conn *c, const char *req, size_t len)
{
	char first[64];
	int status = -1;
	send_all(c->fd, req, len);
	if (http_message(c, first, sizeof(first)) < 0)
		return -1;
	if (sscanf(first, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	return status;
}

/* Reads one line (up to '\n'), copies at most out_sz-1 bytes to out, consumes it. */
static int read_line(struct conn *c, char *out, size_t out_sz)
{
	char *nl;
	while (!(nl = memchr(c->buf, '\n', c->len)))
		if (fill(c) < 0)
			return -1;
	size_t l = (size_t)(nl - c->buf) + 1;
	size_t k = l < out_sz - 1 ? l : out_sz - 1;
	memcpy(out, c->buf, k);
	out[k] = 0;
	consume(c, l);
	return 0;
}

/* Sends a QMP command and reads lines until its answer (events are skipped);
 * returns 0 if the answer is a "return". */
static int qmp_roundtrip(struct conn *c, const char *cmd, size_t len)
{
	char line[1024];
	send_all(c->fd, cmd, len);
	for (;;) {
		if (read_line(c, line, sizeof(line)) < 0)
			return -1;
		if (strstr(line, "\"event\""))
			continue;
		return strstr(line, "\"return\"") ? 0 : -1;
	}
}

static const char GET_ROOT[] = "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n";
static const char PUT_MC_BODY[] = "{\"vcpu_count\": 2, \"mem_size_mib\": 256}";
static const char QMP_CAPS[] = "{\"execute\": \"qmp_capabilities\"}\n";
static const char QMP_STATUS[] = "{\"execute\": \"query-status\"}\n";

/* ---- up ---- */

static long proc_stat_cpu_us(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ") ": field 3 (state) ... field 14 utime, 15 stime */
	unsigned long long ut, st;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long)((ut + st) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static long proc_sched_cpu_us(pid_t pid)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	unsigned long long sum = 0;
	int any = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[320], buf[128];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		sum += strtoull(buf, NULL, 10);
		any = 1;
	}
	closedir(d);
	return any ? (long)(sum / 1000) : -1;
}

static void print_status(const char *what, int status)
{
	if (WIFEXITED(status))
		printf("AC %s %d\n", what, WEXITSTATUS(status));
	else
		printf("AC %s sig %d\n", what, WTERMSIG(status));
}

static int cmd_up(int argc, char **argv)
{
	const char *sock = NULL, *log = NULL;
	int qmp = 0, timeout_s = 10, opt;
	long poll_us = 50;
	while ((opt = getopt(argc, argv, "+qt:i:o:s:")) != -1) {
		switch (opt) {
		case 'q': qmp = 1; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'i': poll_us = atol(optarg); break;
		case 'o': log = optarg; break;
		case 's': sock = optarg; break;
		default: usage();
		}
	}
	if (!sock || optind >= argc)
		usage();
	struct sockaddr_un sa;
	sock_addr(sock, &sa);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);

	pid_t pid;
	double t0 = now_us();
	int e = posix_spawnp(&pid, argv[optind], &fa, NULL, &argv[optind], environ);
	if (e) {
		fprintf(stderr, "apiclient: %s: %s\n", argv[optind], strerror(e));
		return 2;
	}
	double deadline = t0 + timeout_s * 1e6;
	struct timespec nap = {.tv_sec = poll_us / 1000000, .tv_nsec = (poll_us % 1000000) * 1000};
	long tries = 0;
	int fd, status;
	for (;;) {
		tries++;
		fd = try_connect(&sa);
		if (fd >= 0)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			print_status("died", status);
			return 1;
		}
		if (now_us() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			printf("AC timeout\n");
			return 1;
		}
		nanosleep(&nap, NULL);
	}
	double t_conn = now_us();
	long cpu_stat = proc_stat_cpu_us(pid);
	long cpu_sched = proc_sched_cpu_us(pid);

	static struct conn c;
	c.fd = fd;
	int ok;
	if (qmp) {
		char line[1024];
		ok = read_line(&c, line, sizeof(line)) == 0 && strstr(line, "\"QMP\"");
	} else {
		ok = http_roundtrip(&c, GET_ROOT, sizeof(GET_ROOT) - 1) == 200;
	}
	double t_reply = now_us();
	close(fd);

	double t_kill = now_us();
	kill(pid, SIGTERM);
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	double t_exit = now_us();

	printf("AC connect %.0f\n", t_conn - t0);
	printf("AC tries %ld\n", tries);
	printf("AC cpu_stat %ld\n", cpu_stat);
	if (cpu_sched >= 0)
		printf("AC cpu_sched %ld\n", cpu_sched);
	else
		printf("AC cpu_sched -\n");
	if (ok)
		printf("AC reply %.0f\n", t_reply - t0);
	else
		printf("AC reply -\n");
	char what[64];
	snprintf(what, sizeof(what), "exit %.0f", t_exit - t_kill);
	print_status(what, status);
	printf("AC cpu %llu %llu\n",
	       (unsigned long long)ru.ru_utime.tv_sec * 1000000u + (unsigned long long)ru.ru_utime.tv_usec,
	       (unsigned long long)ru.ru_stime.tv_sec * 1000000u + (unsigned long long)ru.ru_stime.tv_usec);
	if (!ok)
		fprintf(stderr, "apiclient: connected, but no valid first answer\n");
	return ok ? 0 : 1;
}

/* ---- lat ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void report(const char *kind, double *v, int n, FILE *samples)
{
	if (samples)
		for (int i = 0; i < n; i++)
			fprintf(samples, "%s %.2f\n", kind, v[i]);
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	int k = (99 * n + 99) / 100; /* nearest rank: ceil(0.99 n) */
	printf("AC lat %s %d %.1f %.1f %.1f %.1f\n", kind, n, med, v[k - 1], v[0], v[n - 1]);
}

static int cmd_lat(int argc, char **argv)
{
	const char *sock = NULL, *out = NULL, *getpath = NULL;
	int qmp = 0, n = 2000, warm = 50, newconn = 0, opt;
	while ((opt = getopt(argc, argv, "qn:w:cg:o:s:")) != -1) {
		switch (opt) {
		case 'g': getpath = optarg; break;
		case 'q': qmp = 1; break;
		case 'n': n = atoi(optarg); break;
		case 'w': warm = atoi(optarg); break;
		case 'c': newconn = 1; break;
		case 'o': out = optarg; break;
		case 's': sock = optarg; break;
		default: usage();
		}
	}
	if (!sock || n <= 0 || warm < 0)
		usage();
	FILE *samples = NULL;
	if (out && !(samples = fopen(out, "a")))
		die(out);
	double *v = calloc((size_t)n, sizeof(double));
	if (!v)
		die("calloc");
	/* The socket may not be listening yet: retry for up to 5 s. */
	static struct conn c;
	struct sockaddr_un sa;
	sock_addr(sock, &sa);
	struct timespec ms = {0, 1000000};
	for (int i = 0; (c.fd = try_connect(&sa)) < 0; i++) {
		if (i == 5000)
			die(sock);
		nanosleep(&ms, NULL);
	}
	errno = 0;

	if (getpath) {
		char req[512];
		int rlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
				    getpath);
		int st;
		for (int i = 0; i < warm + n; i++) {
			double t = now_us();
			if ((st = http_roundtrip(&c, req, (size_t)rlen)) != 200) {
				fprintf(stderr, "apiclient: GET %s answered %d\n", getpath, st);
				return 1;
			}
			if (i >= warm)
				v[i - warm] = now_us() - t;
		}
		report("getpath", v, n, samples);
	} else if (qmp) {
		char line[1024];
		if (read_line(&c, line, sizeof(line)) < 0 || !strstr(line, "\"QMP\""))
			die("QMP greeting");
		if (qmp_roundtrip(&c, QMP_CAPS, sizeof(QMP_CAPS) - 1) < 0)
			die("qmp_capabilities");
		for (int i = 0; i < warm + n; i++) {
			double t = now_us();
			if (qmp_roundtrip(&c, QMP_STATUS, sizeof(QMP_STATUS) - 1) < 0)
				die("query-status");
			if (i >= warm)
				v[i - warm] = now_us() - t;
		}
		report("qmp", v, n, samples);
	} else {
		char put[256];
		int plen = snprintf(put, sizeof(put),
				    "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
				    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
				    sizeof(PUT_MC_BODY) - 1, PUT_MC_BODY);
		int st;
		for (int i = 0; i < warm + n; i++) {
			double t = now_us();
			if ((st = http_roundtrip(&c, GET_ROOT, sizeof(GET_ROOT) - 1)) != 200) {
				fprintf(stderr, "apiclient: GET / answered %d\n", st);
				return 1;
			}
			if (i >= warm)
				v[i - warm] = now_us() - t;
		}
		report("get", v, n, samples);
		for (int i = 0; i < warm + n; i++) {
			double t = now_us();
			if ((st = http_roundtrip(&c, put, (size_t)plen)) != 204) {
				fprintf(stderr, "apiclient: PUT /machine-config answered %d\n", st);
				return 1;
			}
			if (i >= warm)
				v[i - warm] = now_us() - t;
		}
		report("put", v, n, samples);
		/* a one-connection-at-a-time server (serve) would wait for this one */
		close(c.fd);
		c.fd = -1;
		if (newconn) {
			static struct conn c2;
			for (int i = 0; i < warm + n; i++) {
				double t = now_us();
				c2.fd = connect_or_die(sock);
				c2.len = 0;
				if ((st = http_roundtrip(&c2, GET_ROOT, sizeof(GET_ROOT) - 1)) != 200) {
					fprintf(stderr, "apiclient: GET / (new connection) answered %d\n", st);
					return 1;
				}
				close(c2.fd);
				if (i >= warm)
					v[i - warm] = now_us() - t;
			}
			report("newconn", v, n, samples);
		}
	}
	if (c.fd >= 0)
		close(c.fd);
	if (samples)
		fclose(samples);
	free(v);
	return 0;
}

/* ---- serve ---- */

static __attribute__((noreturn)) void cmd_serve(int argc, char **argv)
{
	const char *sock = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "s:")) != -1) {
		if (opt == 's')
			sock = optarg;
		else
			usage();
	}
	if (!sock)
		usage();
	struct sockaddr_un sa;
	sock_addr(sock, &sa);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)
		die(sock);
	static const char ok200[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
	static const char ok204[] = "HTTP/1.1 204 No Content\r\n\r\n";
	static struct conn c;
	for (;;) {
		c.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c.fd < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		c.len = 0;
		char first[64];
		while (http_message(&c, first, sizeof(first)) == 0) {
			int r = !strncmp(first, "GET ", 4) ? send_some(c.fd, ok200, sizeof(ok200) - 1)
							   : send_some(c.fd, ok204, sizeof(ok204) - 1);
			if (r < 0)
				break;
		}
		close(c.fd);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "up"))
		return cmd_up(argc - 1, argv + 1);
	if (!strcmp(argv[1], "lat"))
		return cmd_lat(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		cmd_serve(argc - 1, argv + 1);
	usage();
}
