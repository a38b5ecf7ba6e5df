/* `kite stat`: a live view of one or more VMs' trap accounting, read from their
 * API sockets (GET /stats). Text (top-like), JSON lines or Prometheus text. */
#include "stats/statcli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stats/analytics.h"
#include "util/log.h"

#define MAX_SOCKS 64
#define MAX_REPLY (8u << 20)

enum format { F_TEXT, F_JSON, F_PROM };

/* GET path over a Unix socket; returns the body of a 200 (malloc'd) or NULL
 * with why filled in. */
static char *http_get(const char *sock, const char *path, char *why, size_t whylen)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof(a.sun_path)) {
		snprintf(why, whylen, "socket path too long");
		return NULL;
	}
	strcpy(a.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		snprintf(why, whylen, "write: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (!buf) {
			snprintf(why, whylen, "out of memory");
			close(fd);
			return NULL;
		}
		if (len == cap) {
			if (cap >= MAX_REPLY) {
				snprintf(why, whylen, "reply too large");
				free(buf);
				close(fd);
				return NULL;
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				free(buf);
			buf = nb;
			continue;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	char *body = strstr(buf, "\r\n\r\n");
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !body) {
		snprintf(why, whylen, "not an HTTP reply");
		free(buf);
		return NULL;
	}
	body += 4;
	if (status != 200) {
		snprintf(why, whylen, "HTTP %d: %.200s", status, body);
		free(buf);
		return NULL;
	}
	memmove(buf, body, strlen(body) + 1);
	return buf;
}

static double num(const json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

/* ---- Prometheus text format ---- */

static void prom_vm(FILE *f, const char *vmlabel, const json_t *s)
{
	const json_t *tot = json_object_get(s, "totals");
	fprintf(f, "kite_uptime_seconds{vm=\"%s\"} %.6f\n", vmlabel, num(s, "uptime_us") / 1e6);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)tot, k, v)
		fprintf(f, "kite_%s_total{vm=\"%s\"} %.0f\n", k, vmlabel, json_number_value(v));
	size_t i;
	json_t *vc;
	json_array_foreach(json_object_get(s, "vcpus"), i, vc) {
		int id = (int)json_integer_value(json_object_get(vc, "id"));
		json_object_foreach(json_object_get(vc, "userspace_exits"), k, v)
			fprintf(f, "kite_vcpu_userspace_exits_total{vm=\"%s\",vcpu=\"%d\",reason=\"%s\"} %.0f\n", vmlabel,
				id, k, json_number_value(v));
		json_object_foreach(json_object_get(vc, "exit_handling_ns"), k, v)
			fprintf(f, "kite_vcpu_exit_handling_seconds_total{vm=\"%s\",vcpu=\"%d\",reason=\"%s\"} %.9f\n",
				vmlabel, id, k, json_number_value(v) / 1e9);
		const json_t *t = json_object_get(vc, "time");
		static const char *const tk[] = {"guest_ns", "halted_ns", "exit_handling_ns"};
		for (int j = 0; j < 3; j++)
			fprintf(f, "kite_vcpu_time_seconds_total{vm=\"%s\",vcpu=\"%d\",state=\"%.*s\"} %.9f\n", vmlabel, id,
				(int)(strlen(tk[j]) - 3), tk[j], num(t, tk[j]) / 1e9);
		double cum = 0;
		size_t b;
		json_t *e;
		json_array_foreach(json_object_get(vc, "exit_latency_hist"), b, e) {
			cum += num(e, "count");
			const json_t *le = json_object_get(e, "le_ns");
			if (json_is_null(le))
				fprintf(f, "kite_vcpu_exit_handling_latency_seconds_bucket{vm=\"%s\",vcpu=\"%d\",le=\"+Inf\"} %.0f\n",
					vmlabel, id, cum);
			else
				fprintf(f, "kite_vcpu_exit_handling_latency_seconds_bucket{vm=\"%s\",vcpu=\"%d\",le=\"%g\"} %.0f\n",
					vmlabel, id, json_number_value(le) / 1e9, cum);
		}
		fprintf(f, "kite_vcpu_exit_handling_latency_seconds_count{vm=\"%s\",vcpu=\"%d\"} %.0f\n", vmlabel, id, cum);
		json_object_foreach(json_object_get(vc, "kvm"), k, v)
			fprintf(f, "kite_kvm_vcpu_%s{vm=\"%s\",vcpu=\"%d\"} %.0f\n", k, vmlabel, id, json_number_value(v));
	}
	json_t *d;
	json_array_foreach(json_object_get(s, "devices"), i, d) {
		const char *bus = json_string_value(json_object_get(d, "bus"));
		const char *name = json_string_value(json_object_get(d, "name"));
		json_object_foreach(d, k, v) {
			if (!json_is_number(v) || !strcmp(k, "base") || !strcmp(k, "len"))
				continue;
			fprintf(f, "kite_device_%s_total{vm=\"%s\",bus=\"%s\",device=\"%s\"} %.0f\n", k, vmlabel, bus, name,
				json_number_value(v));
		}
	}
	const json_t *an = json_object_get(s, "analytics");
	if (json_object_get(an, "phase")) {
		fprintf(f, "kite_exit_entropy_bits{vm=\"%s\"} %.6f\n", vmlabel, num(an, "entropy_bits"));
		fprintf(f, "kite_illusion_cost_ratio{vm=\"%s\"} %.6f\n", vmlabel, num(an, "illusion_cost"));
		fprintf(f, "kite_halted_ratio{vm=\"%s\"} %.6f\n", vmlabel, num(an, "halted_frac"));
		fprintf(f, "kite_analytics_window_seconds{vm=\"%s\"} %.3f\n", vmlabel, num(an, "window_s"));
		fprintf(f, "kite_useful_guest_cpu_seconds_per_second{vm=\"%s\"} %.6f\n", vmlabel,
			num(an, "useful_guest_per_s"));
		json_object_foreach(json_object_get(an, "posteriors"), k, v)
			fprintf(f, "kite_phase_probability{vm=\"%s\",phase=\"%s\"} %.6f\n", vmlabel, k, json_number_value(v));
		json_object_foreach(json_object_get(an, "exits_per_s"), k, v)
			fprintf(f, "kite_exits_per_second{vm=\"%s\",class=\"%s\"} %.3f\n", vmlabel, k, json_number_value(v));
	}
}

/* ---- text view ---- */

static void text_vm(FILE *f, const char *sock, const json_t *s, const json_t *prev, double dt)
{
	const json_t *an = json_object_get(s, "analytics");
	const json_t *tot = json_object_get(s, "totals");
	fprintf(f, "VM %s  up %.1f s  exits %.0f (kite %.0f)  phase %s  entropy %.2f bits  cost %.4f%%\n", sock,
		num(s, "uptime_us") / 1e6, num(tot, "exits"), num(tot, "userspace_exits"),
		json_string_value(json_object_get(an, "phase")) ? json_string_value(json_object_get(an, "phase")) : "-",
		num(an, "entropy_bits"), 100 * num(an, "illusion_cost"));
	const char *k;
	json_t *v;
	fprintf(f, "  exits/s:");
	json_object_foreach(json_object_get(an, "exits_per_s"), k, v)
		fprintf(f, " %s %.0f", k, json_number_value(v));
	fprintf(f, "\n");
	size_t i;
	json_t *vc;
	json_array_foreach(json_object_get(s, "vcpus"), i, vc) {
		const json_t *t = json_object_get(vc, "time");
		fprintf(f, "  vcpu%-3lld guest %5.1f%%  halted %5.1f%%  in kite %6.3f%%  exits:",
			(long long)json_integer_value(json_object_get(vc, "id")), 100 * num(t, "guest_frac"),
			100 * num(t, "halted_frac"), 100 * num(t, "exit_handling_frac"));
		json_object_foreach(json_object_get(vc, "userspace_exits"), k, v)
			fprintf(f, " %s %.0f", k, json_number_value(v));
		fprintf(f, "\n");
	}
	fprintf(f, "  %-6s %-16s %12s %10s %12s\n", "bus", "device", "exits", "exits/s", "time ms");
	json_t *d;
	const json_t *pd = json_object_get(prev, "devices");
	json_array_foreach(json_object_get(s, "devices"), i, d) {
		double n = num(d, "exits") + num(d, "kicks");
		if (n == 0)
			continue;
		double rate = 0;
		const json_t *p = json_array_get(pd, i);
		if (p && dt > 0)
			rate = (n - num(p, "exits") - num(p, "kicks")) / dt;
		fprintf(f, "  %-6s %-16s %12.0f %10.0f %12.3f\n", json_string_value(json_object_get(d, "bus")),
			json_string_value(json_object_get(d, "name")), n, rate, num(d, "ns") / 1e6);
	}
}

static int usage_err(const char *msg, const char *arg)
{
	fprintf(stderr, "kite stat: error: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, " (usage: kite stat --api-sock PATH [--api-sock PATH]... [--interval S] [--count N] "
			"[--format text|json|prometheus])\n");
	return KITE_EXIT_USAGE;
}

int stat_main(int argc, char **argv)
{
	enum { O_SOCK = 256, O_INTERVAL, O_COUNT, O_FORMAT, O_HELP };
	static const struct option opts[] = {
		{"api-sock", required_argument, NULL, O_SOCK}, {"interval", required_argument, NULL, O_INTERVAL},
		{"count", required_argument, NULL, O_COUNT},   {"format", required_argument, NULL, O_FORMAT},
		{"help", no_argument, NULL, O_HELP},           {NULL, 0, NULL, 0},
	};
	const char *socks[MAX_SOCKS];
	int nsocks = 0;
	double interval = 0;
	long count = -1;
	enum format fmt = F_TEXT;
	opterr = 0;
	optind = 1;
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCK:
			if (nsocks == MAX_SOCKS)
				return usage_err("at most 64 sockets%s", "");
			socks[nsocks++] = optarg;
			break;
		case O_INTERVAL:
			interval = strtod(optarg, &end);
			if (*end || !(interval >= 0.1 && interval <= 86400))
				return usage_err("--interval '%s': expected seconds between 0.1 and 86400", optarg);
			break;
		case O_COUNT:
			count = strtol(optarg, &end, 10);
			if (*end || count < 1)
				return usage_err("--count '%s': expected a positive number", optarg);
			break;
		case O_FORMAT:
			if (!strcmp(optarg, "text"))
				fmt = F_TEXT;
			else if (!strcmp(optarg, "json"))
				fmt = F_JSON;
			else if (!strcmp(optarg, "prometheus"))
				fmt = F_PROM;
			else
				return usage_err("--format '%s': expected text, json or prometheus", optarg);
			break;
		case O_HELP:
			printf("usage: kite stat --api-sock PATH [--api-sock PATH]... [--interval S] [--count N]\n"
			       "                 [--format text|json|prometheus]\n"
			       "Shows the trap accounting of running kite VMs (GET /stats on their API sockets).\n"
			       "Without --interval: one snapshot. With several sockets, Jain's fairness index of\n"
			       "the VMs' useful guest time. See docs/stats.md.\n");
			return 0;
		case ':':
			return usage_err("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_err("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_err("unexpected argument '%s'", argv[optind]);
	if (nsocks == 0)
		return usage_err("--api-sock is required%s", "");
	if (count < 0)
		count = interval > 0 ? 0 : 1; /* 0: until interrupted */

	json_t *prev[MAX_SOCKS] = {0};
	struct timespec tprev = {0};
	for (long round = 0; count == 0 || round < count; round++) {
		if (round > 0) {
			struct timespec ts = {.tv_sec = (time_t)interval,
					      .tv_nsec = (long)((interval - (double)(time_t)interval) * 1e9)};
			nanosleep(&ts, NULL);
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		double dt = round ? (double)(now.tv_sec - tprev.tv_sec) + (now.tv_nsec - tprev.tv_nsec) / 1e9 : 0;
		tprev = now;
		double shares[MAX_SOCKS];
		if (fmt == F_TEXT && interval > 0 && isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		for (int i = 0; i < nsocks; i++) {
			char why[300];
			char *body = http_get(socks[i], "/stats", why, sizeof(why));
			if (!body) {
				fprintf(stderr, "kite stat: error: '%s': %s\n", socks[i], why);
				for (int j = 0; j < nsocks; j++)
					json_decref(prev[j]);
				return KITE_EXIT_ERROR;
			}
			json_t *s = json_loads(body, 0, NULL);
			free(body);
			if (!json_is_object(s)) {
				fprintf(stderr, "kite stat: error: '%s': the reply is not a JSON object\n", socks[i]);
				json_decref(s);
				for (int j = 0; j < nsocks; j++)
					json_decref(prev[j]);
				return KITE_EXIT_ERROR;
			}
			shares[i] = num(json_object_get(s, "analytics"), "useful_guest_per_s");
			if (fmt == F_JSON) {
				json_object_set_new(s, "socket", json_string(socks[i]));
				char *line = json_dumps(s, JSON_COMPACT);
				printf("%s\n", line);
				free(line);
			} else if (fmt == F_PROM) {
				prom_vm(stdout, socks[i], s);
			} else {
				text_vm(stdout, socks[i], s, prev[i], dt);
			}
			json_decref(prev[i]);
			prev[i] = s;
		}
		if (nsocks > 1) {
			double j = jain_index(shares, (size_t)nsocks);
			if (fmt == F_TEXT)
				printf("fairness (Jain, useful guest time, %d VMs): %.4f\n", nsocks, j);
			else if (fmt == F_PROM)
				printf("kite_fairness_jain_index %.6f\n", j);
			else
				printf("{\"fairness_jain\": %.6f, \"vms\": %d}\n", j, nsocks);
		}
		fflush(stdout);
	}
	for (int j = 0; j < nsocks; j++)
		json_decref(prev[j]);
	return 0;
}
