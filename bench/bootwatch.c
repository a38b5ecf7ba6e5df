/* bootwatch: run a VMM and time it from the outside.
 *
 *   bootwatch [-t SECS] [-o LOG] [-m MARKER]... [-r MARKER [-d MS] [-g MIB]] -- CMD [ARG]...
 *
 * Takes a CLOCK_MONOTONIC timestamp, spawns CMD (posix_spawn, stdin /dev/null,
 * stdout and stderr on two pipes), and reports on its own stdout, one line each:
 *   BW marker I US      the first time MARKER number I (0-based, in -m order) appeared
 *                       in CMD's stdout or stderr, in us since just before the spawn
 *   BW rss K=V ...      with -r: when that marker appears, waits -d MS (default 100),
 *                       reads /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, RssShmem,
 *                       Threads) and /proc/PID/smaps (guest = the Rss of the mappings of at
 *                       least -g MIB, own = VmRSS - guest), then kills CMD with SIGKILL
 *   BW exit US STATUS   when CMD ended: its exit code, "sig N", or "timeout"
 *   BW cpu USER SYS     CMD's CPU time (all its threads, wait4 rusage), in us
 * A marker matches as soon as its bytes arrive, before the line ends. CMD's output
 * goes to LOG (-o; default discarded). Exit status: 0 if CMD ended (whatever its
 * status, which the caller judges), 1 on timeout (-t, default 120 s), 2 on usage.
 *
 * Written for the benchmarks in bench/: static, so it also runs in the lab's busybox
 * world where `date` has no sub-second resolution. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_MARKERS 8
#define TAIL 256 /* bytes kept per stream so a marker split across reads still matches */

static struct timespec t0;

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000u + (uint64_t)((t.tv_nsec - t0.tv_nsec) / 1000);
}

static void usage(void)
{
	fprintf(stderr, "usage: bootwatch [-t SECS] [-o LOG] [-m MARKER]... [-r MARKER [-d MS] [-g MIB]] -- CMD [ARG]...\n");
	exit(2);
}

/* Sum of the "Rss:" of /proc/PID/smaps mappings whose Size is at least min_kb. */
static long smaps_big_rss_kb(pid_t pid, long min_kb)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long size = 0, sum = 0, v;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Size: %ld kB", &v) == 1)
			size = v;
		else if (sscanf(line, "Rss: %ld kB", &v) == 1 && size >= min_kb)
			sum += v;
	}
	fclose(f);
	return sum;
}

static void report_rss(pid_t pid, long guest_mib)
{
	static const char *keys[] = {"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"};
	char path[64], line[256];
	long vals[6] = {-1, -1, -1, -1, -1, -1};
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			for (int i = 0; i < 6; i++) {
				size_t n = strlen(keys[i]);
				if (!strncmp(line, keys[i], n) && line[n] == ':')
					vals[i] = strtol(line + n + 1, NULL, 10);
			}
		}
		fclose(f);
	}
	long guest = guest_mib > 0 ? smaps_big_rss_kb(pid, guest_mib * 1024) : 0;
	printf("BW rss");
	for (int i = 0; i < 6; i++)
		printf(" %s=%ld", keys[i], vals[i]);
	printf(" guest=%ld own=%ld\n", guest, vals[0] >= 0 && guest >= 0 ? vals[0] - guest : -1);
}

int main(int argc, char **argv)
{
	const char *markers[MAX_MARKERS];
	int nmark = 0, rss_mark = -1, delay_ms = 100, timeout_s = 120;
	long guest_mib = 0;
	const char *log = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "+t:o:m:r:d:g:")) != -1) {
		switch (opt) {
		case 't': timeout_s = atoi(optarg); break;
		case 'o': log = optarg; break;
		case 'd': delay_ms = atoi(optarg); break;
		case 'g': guest_mib = atol(optarg); break;
		case 'm':
		case 'r':
			if (nmark == MAX_MARKERS)
				usage();
			if (opt == 'r')
				rss_mark = nmark;
			markers[nmark++] = optarg;
			break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();

	int logfd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		perror("bootwatch: log");
		return 2;
	}
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		perror("bootwatch: pipe");
		return 2;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);

	pid_t pid;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int e = posix_spawnp(&pid, argv[optind], &fa, NULL, &argv[optind], environ);
	if (e) {
		fprintf(stderr, "bootwatch: %s: %s\n", argv[optind], strerror(e));
		return 2;
	}
	close(out[1]);
	close(err[1]);

	struct pollfd pf[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
	char tail[2][TAIL];
	size_t tlen[2] = {0, 0};
	int found[MAX_MARKERS] = {0};
	uint64_t deadline = (uint64_t)timeout_s * 1000000u, rss_at = 0;
	int open_fds = 2, killed = 0, timed_out = 0;

	while (open_fds > 0) {
		uint64_t now = now_us();
		if (now >= deadline && !killed) {
			timed_out = killed = 1;
			kill(pid, SIGKILL);
		}
		if (rss_at && now >= rss_at && !killed) {
			report_rss(pid, guest_mib);
			killed = 1;
			kill(pid, SIGKILL);
		}
		uint64_t wake = rss_at && !killed ? rss_at : deadline;
		int ms = killed ? 1000 : (int)((wake > now ? wake - now : 0) / 1000) + 1;
		int n = poll(pf, 2, ms);
		if (n < 0 && errno != EINTR) {
			perror("bootwatch: poll");
			break;
		}
		for (int s = 0; s < 2 && n > 0; s++) {
			if (pf[s].fd < 0 || !(pf[s].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t r = read(pf[s].fd, buf, sizeof(buf));
			if (r <= 0) {
				if (r < 0 && errno == EINTR)
					continue;
				close(pf[s].fd);
				pf[s].fd = -1;
				open_fds--;
				continue;
			}
			uint64_t t = now_us();
			if (write(logfd, buf, (size_t)r) < 0) {
				/* the log is best effort */
			}
			/* Search the previous tail plus this chunk, then keep the new tail. */
			for (ssize_t off = 0; off < r;) {
				size_t take = (size_t)(r - off) < TAIL ? (size_t)(r - off) : TAIL;
				if (tlen[s] + take > TAIL) {
					size_t drop = tlen[s] + take - TAIL;
					memmove(tail[s], tail[s] + drop, tlen[s] - drop);
					tlen[s] -= drop;
				}
				memcpy(tail[s] + tlen[s], buf + off, take);
				tlen[s] += take;
				off += (ssize_t)take;
				for (int i = 0; i < nmark; i++) {
					if (found[i] || !memmem(tail[s], tlen[s], markers[i], strlen(markers[i])))
						continue;
					found[i] = 1;
					printf("BW marker %d %llu\n", i, (unsigned long long)t);
					fflush(stdout);
					if (i == rss_mark)
						rss_at = t + (uint64_t)delay_ms * 1000u;
				}
			}
		}
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	uint64_t t = now_us();
	if (timed_out)
		printf("BW exit %llu timeout\n", (unsigned long long)t);
	else if (WIFEXITED(status))
		printf("BW exit %llu %d\n", (unsigned long long)t, WEXITSTATUS(status));
	else
		printf("BW exit %llu sig %d\n", (unsigned long long)t, WTERMSIG(status));
	printf("BW cpu %llu %llu\n",
	       (unsigned long long)ru.ru_utime.tv_sec * 1000000u + (unsigned long long)ru.ru_utime.tv_usec,
	       (unsigned long long)ru.ru_stime.tv_sec * 1000000u + (unsigned long long)ru.ru_stime.tv_usec);
	return timed_out ? 1 : 0;
}
