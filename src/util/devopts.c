#include "util/devopts.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	if (!*s)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > max)
			return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned b[6];
	char tail;
	if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (s[3 * i] == ' ' || s[3 * i + 1] == ' ' || (i < 5 && s[3 * i + 2] != ':'))
			return -1;
		mac[i] = (uint8_t)b[i];
	}
	if (mac[0] & 1)
		return -1; /* multicast: not a station address */
	return 0;
}

/* Next comma-separated item of *s, split in place; NULL at the end. */
static char *next_item(char **s)
{
	if (!*s)
		return NULL;
	char *item = *s;
	char *comma = strchr(item, ',');
	if (comma) {
		*comma = 0;
		*s = comma + 1;
	} else {
		*s = NULL;
	}
	return item;
}

/* "key=value" -> value when item starts with key=, else NULL. */
static char *value_of(char *item, const char *key)
{
	size_t n = strlen(key);
	if (strncmp(item, key, n) == 0 && item[n] == '=')
		return item + n + 1;
	return NULL;
}

static bool id_ok(const char *id)
{
	if (!*id || strlen(id) > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '-'))
			return false;
	return true;
}

int devopt_disk(char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	if (cfg->nr_disks >= KITE_MAX_DISKS)
		return fail(msg, len, "--disk: at most %d disks", KITE_MAX_DISKS);
	struct disk_config d = {0};
	char *rest = arg;
	char *item = next_item(&rest);
	char *v = item ? value_of(item, "path") : NULL;
	d.path = v ? v : item;
	if (!d.path || !*d.path)
		return fail(msg, len, "--disk '%s': expected PATH[,ro][,id=NAME][,serial=S]", arg);
	while ((item = next_item(&rest))) {
		if (strcmp(item, "ro") == 0) {
			d.read_only = true;
		} else if ((v = value_of(item, "id"))) {
			if (!id_ok(v))
				return fail(msg, len, "--disk: id '%s': expected 1-64 letters, digits, '_' or '-'", v);
			d.id = v;
		} else if ((v = value_of(item, "serial"))) {
			if (strlen(v) > 20)
				return fail(msg, len, "--disk: serial '%s': at most 20 bytes", v);
			d.serial = v;
		} else {
			return fail(msg, len, "--disk: unknown item '%s' (expected ro, id=NAME or serial=S)", item);
		}
	}
	struct disk_config *slot = &cfg->disks[cfg->nr_disks];
	char auto_id[16];
	snprintf(auto_id, sizeof(auto_id), "disk%u", cfg->nr_disks);
	const char *id = d.id ? d.id : auto_id;
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		if (strcmp(cfg->disks[i].id, id) == 0)
			return fail(msg, len, "--disk: duplicate drive id '%s'", id);
	*slot = d;
	memcpy(slot->auto_id, auto_id, sizeof(auto_id));
	if (!slot->id)
		slot->id = slot->auto_id;
	cfg->nr_disks++;
	return 0;
}

int devopt_net(char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	if (cfg->nr_nics >= KITE_MAX_NICS)
		return fail(msg, len, "--net: at most %d network interfaces", KITE_MAX_NICS);
	struct net_config n = {0};
	char *rest = arg, *item, *v;
	while ((item = next_item(&rest))) {
		if ((v = value_of(item, "tap"))) {
			if (!*v || strlen(v) >= 16)
				return fail(msg, len, "--net: tap '%s': expected an interface name of 1-15 bytes", v);
			n.tap = v;
		} else if ((v = value_of(item, "mac"))) {
			if (parse_mac(v, n.mac) < 0)
				return fail(msg, len, "--net: mac '%s': expected a unicast XX:XX:XX:XX:XX:XX", v);
			n.has_mac = true;
		} else if ((v = value_of(item, "id"))) {
			if (!id_ok(v))
				return fail(msg, len, "--net: id '%s': expected 1-64 letters, digits, '_' or '-'", v);
			n.id = v;
		} else {
			return fail(msg, len, "--net: unknown item '%s' (expected tap=NAME, mac=MAC or id=NAME)", item);
		}
	}
	if (!n.tap)
		return fail(msg, len, "--net '%s': tap=NAME is required", arg);
	struct net_config *slot = &cfg->nics[cfg->nr_nics];
	char auto_id[16];
	snprintf(auto_id, sizeof(auto_id), "net%u", cfg->nr_nics);
	const char *id = n.id ? n.id : auto_id;
	for (unsigned i = 0; i < cfg->nr_nics; i++) {
		if (strcmp(cfg->nics[i].id, id) == 0)
			return fail(msg, len, "--net: duplicate interface id '%s'", id);
		if (strcmp(cfg->nics[i].tap, n.tap) == 0)
			return fail(msg, len, "--net: tap '%s' given twice", n.tap);
	}
	*slot = n;
	memcpy(slot->auto_id, auto_id, sizeof(auto_id));
	if (!slot->id)
		slot->id = slot->auto_id;
	cfg->nr_nics++;
	return 0;
}

int devopt_vsock(char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	if (cfg->vsock.enabled)
		return fail(msg, len, "--vsock: only one vsock device");
	struct vsock_config v = {.enabled = true};
	bool have_cid = false;
	char *rest = arg, *item, *x;
	while ((item = next_item(&rest))) {
		if ((x = value_of(item, "cid"))) {
			if (parse_u32(x, UINT32_MAX, &v.cid) < 0 || v.cid < 3)
				return fail(msg, len, "--vsock: cid '%s': expected a number of at least 3", x);
			have_cid = true;
		} else if ((x = value_of(item, "uds"))) {
			if (!*x || strlen(x) >= 100)
				return fail(msg, len, "--vsock: uds '%s': expected a socket path of 1-99 bytes", x);
			v.uds_path = x;
		} else {
			return fail(msg, len, "--vsock: unknown item '%s' (expected cid=N or uds=PATH)", item);
		}
	}
	if (!have_cid || !v.uds_path)
		return fail(msg, len, "--vsock '%s': expected cid=N,uds=PATH", arg);
	cfg->vsock = v;
	return 0;
}

int devopt_balloon(char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	if (cfg->balloon.enabled)
		return fail(msg, len, "--balloon: only one balloon device");
	struct balloon_config b = {.enabled = true};
	char *rest = arg, *item, *x;
	item = next_item(&rest);
	if (!item || parse_u32(item, 1u << 20, &b.target_mib) < 0)
		return fail(msg, len, "--balloon '%s': expected MiB[,deflate-on-oom][,stats=SECONDS]", arg);
	while ((item = next_item(&rest))) {
		if (strcmp(item, "deflate-on-oom") == 0) {
			b.deflate_on_oom = true;
		} else if ((x = value_of(item, "stats"))) {
			if (parse_u32(x, 86400, &b.stats_interval_s) < 0)
				return fail(msg, len, "--balloon: stats '%s': expected seconds (0-86400)", x);
		} else {
			return fail(msg, len, "--balloon: unknown item '%s' (expected deflate-on-oom or stats=S)", item);
		}
	}
	cfg->balloon = b;
	return 0;
}

int devopt_affinity(const char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	cpu_set_t allowed;
	CPU_ZERO(&allowed);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return fail(msg, len, "--vcpu-affinity: cannot read this process's CPUs: %s", strerror(errno));
	unsigned n = 0;
	const char *p = arg;
	if (!*p)
		return fail(msg, len, "--vcpu-affinity '%s': expected host CPU numbers, comma-separated", arg);
	while (*p) {
		char num[16];
		size_t k = strcspn(p, ",");
		if (k == 0 || k >= sizeof(num))
			return fail(msg, len, "--vcpu-affinity '%s': expected host CPU numbers, comma-separated", arg);
		memcpy(num, p, k);
		num[k] = 0;
		uint32_t cpu;
		if (parse_u32(num, CPU_SETSIZE - 1, &cpu) < 0)
			return fail(msg, len, "--vcpu-affinity '%s': '%s' is not a CPU number", arg, num);
		if (!CPU_ISSET((int)cpu, &allowed))
			return fail(msg, len, "--vcpu-affinity: host CPU %u does not exist or is not available to kite",
				    cpu);
		if (n == sizeof(cfg->affinity) / sizeof(cfg->affinity[0]))
			return fail(msg, len, "--vcpu-affinity: at most %zu CPUs",
				    sizeof(cfg->affinity) / sizeof(cfg->affinity[0]));
		cfg->affinity[n++] = (int)cpu;
		p += k;
		if (*p == ',' && *++p == 0)
			return fail(msg, len, "--vcpu-affinity '%s': a trailing comma", arg);
	}
	cfg->nr_affinity = n;
	return 0;
}

int devopt_sched(const char *arg, struct vm_config *cfg, char *msg, size_t len)
{
	static const struct {
		const char *name;
		int policy, lo, hi, def;
		bool needs;
	} pol[] = {
		{"other", SCHED_OTHER, -20, 19, 0, false}, {"batch", SCHED_BATCH, -20, 19, 0, false},
		{"idle", SCHED_IDLE, 0, 0, 0, false},      {"fifo", SCHED_FIFO, 1, 99, 0, true},
		{"rr", SCHED_RR, 1, 99, 0, true},
	};
	const char *colon = strchr(arg, ':');
	size_t nl = colon ? (size_t)(colon - arg) : strlen(arg);
	for (size_t i = 0; i < sizeof(pol) / sizeof(pol[0]); i++) {
		if (strlen(pol[i].name) != nl || strncmp(arg, pol[i].name, nl) != 0)
			continue;
		int v = pol[i].def;
		if (colon) {
			char *end;
			errno = 0;
			long x = strtol(colon + 1, &end, 10);
			if (!colon[1] || *end || errno || x < pol[i].lo || x > pol[i].hi || pol[i].lo == pol[i].hi)
				return fail(msg, len, "--vcpu-sched '%s': %s takes %s", arg, pol[i].name,
					    pol[i].lo == pol[i].hi ? "no value"
					    : pol[i].needs   ? "a priority 1-99"
							     : "a nice value -20..19");
			v = (int)x;
		} else if (pol[i].needs) {
			return fail(msg, len, "--vcpu-sched '%s': %s needs a priority, e.g. %s:10", arg, pol[i].name,
				    pol[i].name);
		}
		cfg->sched_policy = pol[i].policy;
		cfg->sched_prio = v;
		cfg->sched_set = true;
		return 0;
	}
	return fail(msg, len, "--vcpu-sched '%s': expected other[:NICE], batch[:NICE], idle, fifo:PRIO or rr:PRIO",
		    arg);
}
