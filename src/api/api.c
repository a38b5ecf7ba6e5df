/* The Firecracker-compatible control plane: one controller object holds the
 * pre-boot configuration (as the validated JSON the user sent, which is also what
 * GET /vm/config returns) and the VM once started. Every route runs on the API
 * thread with the controller locked; none waits on a vCPU except pause, which
 * only waits for vCPUs to leave KVM_RUN. */
#include "api/api.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/http.h"
#include "api/metrics.h"
#include "api/schema.h"
#include "arch/x86/template.h"
#include "devices/i8042.h"
#include "migration/migrate.h"
#include "snapshot/snapshot.h"
#include "stats/stats.h"
#include "util/devopts.h"
#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/balloon.h"
#include "vmm/machine.h"

#ifndef KITE_VERSION
#define KITE_VERSION "0.0.0"
#endif

#define DEFAULT_BOOT_ARGS "console=ttyS0 reboot=k panic=1"
#define MAX_DEVICES 16

enum state { NOT_STARTED, RUNNING, PAUSED };

static struct controller {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum state state;
	bool started;   /* main thread: the VM runs, wait for it */
	bool quit;      /* main thread: leave without a VM */
	int quit_code;
	const struct api_opts *opts;
	struct vm vm;
	struct vm_config cfg;
	/* The configuration as sent, keyed like FullVmConfiguration. */
	json_t *config;
	int start_code; /* exit code class of the last failed InstanceStart */
	bool configured; /* a boot resource was set (snapshot load is refused then) */
	int uffd;        /* the Uffd backend's userfaultfd of a loaded snapshot, or -1 */
} ctl = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .uffd = -1};

struct reply {
	int status;
	json_t *body; /* for 200 */
	char fault[400];
};

static int fault(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fault(struct reply *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->fault, sizeof(r->fault), fmt, ap);
	va_end(ap);
	r->status = 400;
	return -1;
}

static const char *state_name(enum state s)
{
	return s == NOT_STARTED ? "Not started" : s == RUNNING ? "Running" : "Paused";
}

static int pre_boot(struct reply *r, const char *what)
{
	if (ctl.state != NOT_STARTED)
		return fault(r, "The requested operation is not supported after starting the microVM: %s.", what);
	return 0;
}

static int post_boot(struct reply *r, const char *what)
{
	if (ctl.state == NOT_STARTED)
		return fault(r, "The requested operation is not supported before starting the microVM: %s.", what);
	return 0;
}

/* ---- machine configuration ---- */

static json_t *machine_config(void)
{
	json_t *mc = json_object_get(ctl.config, "machine-config");
	if (!mc) {
		mc = json_pack("{s:i, s:i, s:b, s:b, s:s}", "vcpu_count", 1, "mem_size_mib", 128, "smt", 0,
			       "track_dirty_pages", 0, "huge_pages", "None");
		json_object_set_new(ctl.config, "machine-config", mc);
	}
	return mc;
}

/* What kite cannot do yet is refused, never silently ignored. */
static int check_machine_config(const json_t *mc, struct reply *r)
{
	json_int_t vcpus = json_integer_value(json_object_get(mc, "vcpu_count"));
	json_int_t mem = json_integer_value(json_object_get(mc, "mem_size_mib"));
	if (vcpus < 1 || vcpus > 32)
		return fault(r, "Invalid vCPU count: %lld; must be between 1 and 32.", (long long)vcpus);
	if (mem < 2 || mem > 1024 * 1024)
		return fault(r, "Invalid memory size: %lld MiB; must be between 2 and 1048576.", (long long)mem);
	if (json_is_true(json_object_get(mc, "smt")))
		return fault(r, "SMT is not supported by kite: every vCPU is a core of its own.");
	const char *hp = json_string_value(json_object_get(mc, "huge_pages"));
	if (hp && strcmp(hp, "2M") == 0 && mem % 2)
		return fault(r, "huge_pages 2M needs mem_size_mib in whole 2 MiB pages: %lld is odd.", (long long)mem);
	const char *tmpl = json_string_value(json_object_get(mc, "cpu_template"));
	if (tmpl && strcmp(tmpl, "None") != 0)
		return fault(r, "CPU template '%s' is not supported by kite; use PUT /cpu-config.", tmpl);
	return 0;
}

static int put_machine_config(const json_t *body, struct reply *r)
{
	json_t *mc = json_pack("{s:b, s:b, s:s}", "smt", 0, "track_dirty_pages", 0, "huge_pages", "None");
	json_object_update(mc, (json_t *)body);
	if (check_machine_config(mc, r) < 0) {
		json_decref(mc);
		return -1;
	}
	json_object_set_new(ctl.config, "machine-config", mc);
	return 0;
}

static int patch_machine_config(const json_t *body, struct reply *r)
{
	json_t *mc = json_deep_copy(machine_config());
	json_object_update(mc, (json_t *)body);
	if (check_machine_config(mc, r) < 0) {
		json_decref(mc);
		return -1;
	}
	json_object_set_new(ctl.config, "machine-config", mc);
	return 0;
}

/* ---- devices kept as configuration until their issue lands ---- */

/* Checks the body's id against the path's and finds the entry with that id in
 * the list: returns its index, -1 when absent, -2 (with a fault) on a mismatch. */
static long find_keyed(const char *list, const char *key, const char *id, const json_t *body,
		       struct reply *r)
{
	const char *body_id = json_string_value(json_object_get(body, key));
	if (!body_id || strcmp(body_id, id) != 0) {
		fault(r, "The id from the path does not match the id from the body.");
		return -2;
	}
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(ctl.config, list), i, it)
		if (strcmp(json_string_value(json_object_get(it, key)), id) == 0)
			return (long)i;
	return -1;
}

static int put_keyed(const char *list, const char *key, const char *id, const json_t *body,
		     struct reply *r)
{
	long i = find_keyed(list, key, id, body, r);
	if (i == -2)
		return -1;
	json_t *arr = json_object_get(ctl.config, list);
	if (!arr) {
		arr = json_array();
		json_object_set_new(ctl.config, list, arr);
	}
	if (i >= 0)
		return json_array_set(arr, (size_t)i, (json_t *)body) == 0 ? 0 : fault(r, "Out of memory.");
	if (json_array_size(arr) >= MAX_DEVICES)
		return fault(r, "Too many devices of this kind: at most %d.", MAX_DEVICES);
	json_array_append(arr, (json_t *)body);
	return 0;
}

static int patch_keyed(const char *list, const char *key, const char *id, const json_t *body,
		       struct reply *r)
{
	long i = find_keyed(list, key, id, body, r);
	if (i == -2)
		return -1;
	if (i < 0)
		return fault(r, "No device with id '%s' was configured.", id);
	json_object_update(json_array_get(json_object_get(ctl.config, list), (size_t)i), (json_t *)body);
	return 0;
}

/* ---- actions ---- */

static char *dup_or_null(const json_t *v)
{
	const char *s = json_string_value(v);
	return s ? strdup(s) : NULL;
}

/* Strings the device configuration took from the JSON: copies, so PATCHes of
 * the JSON after boot never pull them from under a device. */
static char *owned[4 * (KITE_MAX_DISKS + KITE_MAX_NICS) + 4];
static unsigned nr_owned;

static const char *keep(const json_t *v)
{
	const char *s = json_string_value(v);
	if (!s || nr_owned >= sizeof(owned) / sizeof(owned[0]))
		return NULL;
	return owned[nr_owned++] = strdup(s);
}

/* A RateLimiter object (absent or null: no limit). The schema checked types
 * and minimums. */
static void tb_from_json(const json_t *o, struct tb_config *t)
{
	memset(t, 0, sizeof(*t));
	if (!json_is_object(o))
		return;
	t->size = (uint64_t)json_integer_value(json_object_get(o, "size"));
	t->refill_ms = (uint64_t)json_integer_value(json_object_get(o, "refill_time"));
	t->one_time_burst = (uint64_t)json_integer_value(json_object_get(o, "one_time_burst"));
}

static void rl_from_json(const json_t *obj, const char *key, struct rl_config *c)
{
	const json_t *rl = json_object_get(obj, key);
	tb_from_json(json_object_get(rl, "bandwidth"), &c->bandwidth);
	tb_from_json(json_object_get(rl, "ops"), &c->ops);
}

/* Drives (the root device first, as /dev/vda), network interfaces, vsock,
 * entropy and balloon from the JSON into ctl.cfg. */
static int devices_config(struct reply *r)
{
	struct vm_config *c = &ctl.cfg;
	for (unsigned i = 0; i < nr_owned; i++)
		free(owned[i]);
	nr_owned = 0;
	c->nr_disks = c->nr_nics = 0;
	c->vsock.enabled = c->rng = c->balloon.enabled = false;
	memset(&c->rng_rl, 0, sizeof(c->rng_rl));

	const json_t *drives = json_object_get(ctl.config, "drives");
	if (json_array_size(drives) > KITE_MAX_DISKS)
		return fault(r, "Too many drives: kite supports %d.", KITE_MAX_DISKS);
	size_t roots = 0, k;
	const json_t *dr;
	json_array_foreach(drives, k, dr) roots += json_is_true(json_object_get(dr, "is_root_device"));
	if (roots > 1)
		return fault(r, "A root block device already exists: only one drive may have is_root_device.");
	for (int pass = 0; pass < 2; pass++) {
		size_t i;
		const json_t *d;
		json_array_foreach(drives, i, d) {
			bool root = json_is_true(json_object_get(d, "is_root_device"));
			if (root != (pass == 0))
				continue;
			const char *id = json_string_value(json_object_get(d, "drive_id"));
			if (json_object_get(d, "socket") && !json_is_null(json_object_get(d, "socket")))
				return fault(r, "Drive '%s': vhost-user block devices (socket) are not supported.", id);
			if (!json_string_value(json_object_get(d, "path_on_host")))
				return fault(r, "Drive '%s': path_on_host is required.", id);
			struct disk_config *dc = &c->disks[c->nr_disks++];
			memset(dc, 0, sizeof(*dc));
			rl_from_json(d, "rate_limiter", &dc->rl);
			dc->id = keep(json_object_get(d, "drive_id"));
			dc->path = keep(json_object_get(d, "path_on_host"));
			dc->read_only = json_is_true(json_object_get(d, "is_read_only"));
		}
	}
	const json_t *nics = json_object_get(ctl.config, "network-interfaces");
	if (json_array_size(nics) > KITE_MAX_NICS)
		return fault(r, "Too many network interfaces: kite supports %d.", KITE_MAX_NICS);
	size_t i;
	const json_t *n;
	json_array_foreach(nics, i, n) {
		const char *id = json_string_value(json_object_get(n, "iface_id"));
		struct net_config *nc = &c->nics[c->nr_nics];
		memset(nc, 0, sizeof(*nc));
		rl_from_json(n, "rx_rate_limiter", &nc->rx_rl);
		rl_from_json(n, "tx_rate_limiter", &nc->tx_rl);
		const char *mac = json_string_value(json_object_get(n, "guest_mac"));
		if (mac) {
			if (parse_mac(mac, nc->mac) < 0)
				return fault(r, "Network interface '%s': invalid guest_mac '%s'.", id, mac);
			nc->has_mac = true;
		}
		const char *tap = json_string_value(json_object_get(n, "host_dev_name"));
		for (unsigned j = 0; j < c->nr_nics && tap; j++)
			if (strcmp(c->nics[j].tap, tap) == 0)
				return fault(r, "Network interface '%s': host_dev_name '%s' is used twice.", id,
					     c->nics[j].tap);
		nc->id = keep(json_object_get(n, "iface_id"));
		nc->tap = keep(json_object_get(n, "host_dev_name"));
		c->nr_nics++;
	}
	const json_t *vs = json_object_get(ctl.config, "vsock");
	if (vs) {
		json_int_t cid = json_integer_value(json_object_get(vs, "guest_cid"));
		if (cid < 3 || cid > UINT32_MAX)
			return fault(r, "Invalid vsock guest_cid %lld: expected 3 to 4294967295.", (long long)cid);
		c->vsock.enabled = true;
		c->vsock.cid = (uint32_t)cid;
		c->vsock.uds_path = keep(json_object_get(vs, "uds_path"));
	}
	const json_t *ent = json_object_get(ctl.config, "entropy");
	if (ent) {
		rl_from_json(ent, "rate_limiter", &c->rng_rl);
		c->rng = true;
	}
	const json_t *bal = json_object_get(ctl.config, "balloon");
	if (bal) {
		c->balloon.enabled = true;
		c->balloon.target_mib = (uint32_t)json_integer_value(json_object_get(bal, "amount_mib"));
		c->balloon.deflate_on_oom = json_is_true(json_object_get(bal, "deflate_on_oom"));
		c->balloon.stats_interval_s =
			(uint32_t)json_integer_value(json_object_get(bal, "stats_polling_interval_s"));
	}
	return 0;
}

/* Like Firecracker: a root drive adds root=/dev/vda (or root=PARTUUID=...) and
 * ro/rw to the boot arguments. */
static char *root_args(const char *args)
{
	const json_t *drives = json_object_get(ctl.config, "drives");
	size_t i;
	const json_t *d;
	json_array_foreach(drives, i, d) {
		if (!json_is_true(json_object_get(d, "is_root_device")))
			continue;
		const char *uuid = json_string_value(json_object_get(d, "partuuid"));
		bool ro = json_is_true(json_object_get(d, "is_read_only"));
		char *out = NULL;
		if (asprintf(&out, "%s root=%s%s %s", args, uuid ? "PARTUUID=" : "/dev/vda", uuid ? uuid : "",
			     ro ? "ro" : "rw") < 0)
			return NULL;
		return out;
	}
	return strdup(args);
}

static int build_vm_config(struct reply *r)
{
	const json_t *bs = json_object_get(ctl.config, "boot-source");
	if (!bs)
		return fault(r, "Cannot start microvm without kernel configuration.");
	if (devices_config(r) < 0)
		return -1;
	const json_t *mc = machine_config();
	struct vm_config *c = &ctl.cfg;
	free((char *)c->kernel);
	free((char *)c->initrd);
	free((char *)c->cmdline);
	c->kernel = dup_or_null(json_object_get(bs, "kernel_image_path"));
	c->initrd = dup_or_null(json_object_get(bs, "initrd_path"));
	const char *args = json_string_value(json_object_get(bs, "boot_args"));
	c->cmdline = root_args(args ? args : DEFAULT_BOOT_ARGS);
	c->cpus = (unsigned)json_integer_value(json_object_get(mc, "vcpu_count"));
	c->mem_mib = (uint64_t)json_integer_value(json_object_get(mc, "mem_size_mib"));
	const char *hp = json_string_value(json_object_get(mc, "huge_pages"));
	c->huge_pages = hp && strcmp(hp, "2M") == 0 ? GMEM_HUGETLB : GMEM_ANON;
	c->track_dirty = json_is_true(json_object_get(mc, "track_dirty_pages"));
	const json_t *serial = json_object_get(ctl.config, "serial");
	const char *out = json_string_value(json_object_get(serial, "serial_out_path"));
	c->serial = out ? SERIAL_FILE : SERIAL_STDIO;
	c->serial_path = out;
	c->boot_timer = ctl.opts->boot_timer;
	c->seccomp = ctl.opts->seccomp;
	c->exec_time = ctl.opts->exec_time;
	return 0;
}

static int instance_start(struct reply *r)
{
	if (pre_boot(r, "InstanceStart") < 0 || build_vm_config(r) < 0)
		return -1;
	struct kite_err err = {0};
	vm_init(&ctl.vm);
	if (machine_start(&ctl.vm, &ctl.cfg, &err) < 0) {
		ctl.start_code = err.code;
		return fault(r, "Failed to start the microVM: %s", err.msg);
	}
	ctl.state = RUNNING;
	ctl.started = true;
	metrics_set_vm(&ctl.vm);
	pthread_cond_broadcast(&ctl.cond);
	return 0;
}

static int put_actions(const json_t *body, struct reply *r)
{
	const char *a = json_string_value(json_object_get(body, "action_type"));
	if (strcmp(a, "InstanceStart") == 0)
		return instance_start(r);
	if (strcmp(a, "FlushMetrics") == 0) {
		if (metrics_flush() < 0)
			return fault(r, "Metrics are not configured: PUT /metrics or --metrics-path first.");
		return 0;
	}
	/* SendCtrlAltDel */
	if (post_boot(r, "SendCtrlAltDel") < 0)
		return -1;
	if (i8042_send_ctrl_alt_del(&ctl.vm) < 0)
		return fault(r, "The guest's keyboard controller does not accept keys now.");
	return 0;
}

static int patch_vm(const json_t *body)
{
	const char *s = json_string_value(json_object_get(body, "state"));
	if (strcmp(s, "Paused") == 0) {
		if (ctl.state == RUNNING)
			vcpus_pause(&ctl.vm);
		ctl.state = PAUSED;
	} else {
		if (ctl.state == PAUSED)
			vcpus_resume(&ctl.vm);
		ctl.state = RUNNING;
	}
	return 0;
}

/* ---- the route table ---- */

enum when { ANY, PRE_BOOT, POST_BOOT };

struct route {
	const char *method;
	const char *path;      /* exact, or a prefix ending in '/' with an id after it */
	const char *schema;    /* body definition, NULL for no body */
	int (*handler)(const json_t *body, const char *id, struct reply *r);
	unsigned metric;       /* index into the request counters */
	enum when when;        /* which VM states allow it, checked before the handler */
};

static int h_get_root(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = json_pack("{s:s, s:s, s:s, s:s}", "app_name", "kite", "id",
			    ctl.opts->id ? ctl.opts->id : "anonymous-instance", "state",
			    state_name(ctl.state), "vmm_version", KITE_VERSION);
	return 0;
}

static int h_get_version(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = json_pack("{s:s}", "firecracker_version", KITE_VERSION);
	return 0;
}

static int h_put_actions(const json_t *b, const char *id, struct reply *r) { (void)id; return put_actions(b, r); }

static int h_put_boot_source(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	(void)r;
	json_object_set(ctl.config, "boot-source", (json_t *)b);
	return 0;
}

static int h_get_machine_config(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = json_deep_copy(machine_config());
	return 0;
}

static int h_put_machine_config(const json_t *b, const char *id, struct reply *r) { (void)id; return put_machine_config(b, r); }
static int h_patch_machine_config(const json_t *b, const char *id, struct reply *r) { (void)id; return patch_machine_config(b, r); }

static int h_put_cpu_config(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	/* A custom CPU template (docs/cpu-templates.md): parsed strictly and checked
	 * against this host now; its vCPUs apply it at InstanceStart. */
	char msg[300];
	struct cpu_template *t = template_from_json(b, msg, sizeof(msg));
	if (!t)
		return fault(r, "Invalid CPU template: %s.", msg);
	if (template_check_host(t, msg, sizeof(msg)) < 0) {
		template_free(t);
		return fault(r, "CPU template refused: %s.", msg);
	}
	template_free(ctl.cfg.cpu_template);
	ctl.cfg.cpu_template = t;
	json_object_set(ctl.config, "cpu-config", (json_t *)b);
	return 0;
}

static int h_put_drive(const json_t *b, const char *id, struct reply *r)
{
	return put_keyed("drives", "drive_id", id, b, r);
}

static int h_patch_drive(const json_t *b, const char *id, struct reply *r)
{
	/* The running disk first: nothing is recorded that did not apply. */
	if (ctl.state != NOT_STARTED) {
		struct rl_config rl;
		rl_from_json(b, "rate_limiter", &rl);
		struct kite_err err = {0};
		if (blk_update(&ctl.vm, id, json_string_value(json_object_get(b, "path_on_host")),
			       json_object_get(b, "rate_limiter") ? &rl : NULL, &err) < 0)
			return fault(r, "%s.", err.msg);
	}
	return patch_keyed("drives", "drive_id", id, b, r);
}

static int h_put_net(const json_t *b, const char *id, struct reply *r)
{
	return put_keyed("network-interfaces", "iface_id", id, b, r);
}

static int h_patch_net(const json_t *b, const char *id, struct reply *r)
{
	/* The running interface first: nothing is recorded that did not apply. */
	if (ctl.state != NOT_STARTED) {
		struct rl_config rx, tx;
		rl_from_json(b, "rx_rate_limiter", &rx);
		rl_from_json(b, "tx_rate_limiter", &tx);
		if (net_set_rate_limiters(&ctl.vm, id, json_object_get(b, "rx_rate_limiter") ? &rx : NULL,
					  json_object_get(b, "tx_rate_limiter") ? &tx : NULL) < 0)
			return fault(r, "Network interface '%s' does not exist.", id);
	}
	return patch_keyed("network-interfaces", "iface_id", id, b, r);
}

/* PUT of a single object stored under its FullVmConfiguration key. */
static int put_object(const char *key, const json_t *b, struct reply *r)
{
	(void)r;
	json_object_set(ctl.config, key, (json_t *)b);
	return 0;
}

static int h_put_vsock(const json_t *b, const char *id, struct reply *r) { (void)id; return put_object("vsock", b, r); }
static int h_put_entropy(const json_t *b, const char *id, struct reply *r) { (void)id; return put_object("entropy", b, r); }
static int h_put_serial(const json_t *b, const char *id, struct reply *r) { (void)id; return put_object("serial", b, r); }
static int h_put_balloon(const json_t *b, const char *id, struct reply *r) { (void)id; return put_object("balloon", b, r); }

/* The balloon routes (other than PUT) take its configuration or fail. */
static json_t *balloon(struct reply *r)
{
	json_t *bal = json_object_get(ctl.config, "balloon");
	if (!bal)
		fault(r, "Balloon device not configured.");
	return bal;
}

static int h_get_balloon(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	json_t *bal = balloon(r);
	if (!bal)
		return -1;
	r->body = json_deep_copy(bal);
	return 0;
}

static int h_patch_balloon(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	json_t *bal = balloon(r);
	if (!bal)
		return -1;
	json_int_t mib = json_integer_value(json_object_get(b, "amount_mib"));
	if (mib < 0 || mib > BALLOON_MAX_MIB)
		return fault(r, "Amount of pages requested is too large.");
	if (ctl.state != NOT_STARTED && balloon_set_target(&ctl.vm, (uint32_t)mib) < 0)
		return fault(r, "The balloon device is not available.");
	json_object_update(bal, (json_t *)b);
	return 0;
}

static int h_get_balloon_stats(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	json_t *bal = balloon(r);
	if (!bal)
		return -1;
	struct balloon_stats s;
	if (ctl.state == NOT_STARTED ||
	    json_integer_value(json_object_get(bal, "stats_polling_interval_s")) <= 0 ||
	    balloon_get_stats(&ctl.vm, &s) < 0)
		return fault(r, "Statistics for the balloon device are not enabled.");
	r->body = json_pack("{s:I, s:I, s:I, s:I}", "target_pages", (json_int_t)s.target_pages,
			    "actual_pages", (json_int_t)s.actual_pages, "target_mib", (json_int_t)s.target_mib,
			    "actual_mib", (json_int_t)s.actual_mib);
	for (unsigned t = 0; t < BALLOON_S_NR; t++)
		if (s.present & (1u << t))
			json_object_set_new(r->body, balloon_stat_name(t), json_integer((json_int_t)s.value[t]));
	return 0;
}

static int h_patch_balloon_stats(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	json_t *bal = balloon(r);
	if (!bal)
		return -1;
	json_int_t sec = json_integer_value(json_object_get(b, "stats_polling_interval_s"));
	if (sec < 0 || sec > UINT32_MAX)
		return fault(r, "Invalid statistics polling interval.");
	if (ctl.state != NOT_STARTED && balloon_set_stats_interval(&ctl.vm, (uint32_t)sec) < 0)
		return fault(r, "Cannot enable or disable balloon statistics after boot.");
	json_object_set(bal, "stats_polling_interval_s", json_object_get(b, "stats_polling_interval_s"));
	return 0;
}

static int h_put_logger(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	const char *level = json_string_value(json_object_get(b, "level"));
	if (level) {
		enum log_level l;
		if (strcasecmp(level, "Off") == 0)
			l = LOG_OFF;
		else if (strcasecmp(level, "Trace") == 0)
			l = LOG_DEBUG;
		else if (log_parse_level(level, &l) < 0)
			return fault(r, "Invalid log level: %s.", level);
		log_set_level(l);
	}
	const char *path = json_string_value(json_object_get(b, "log_path"));
	if (path && log_open(path) < 0)
		return fault(r, "Cannot open the log file '%s': %s.", path, strerror(errno));
	json_object_set(ctl.config, "logger", (json_t *)b);
	return 0;
}

static int h_put_metrics(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	const char *path = json_string_value(json_object_get(b, "metrics_path"));
	if (metrics_open(path) < 0)
		return fault(r, "Cannot open the metrics file '%s': %s.", path, strerror(errno));
	json_object_set(ctl.config, "metrics", (json_t *)b);
	return 0;
}

static int h_patch_vm(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	if (migration_busy())
		return fault(r, "A migration is running: the VM is paused and resumed by it.");
	return patch_vm(b);
}

/* kite's trap accounting (docs/stats.md): not in Firecracker's API. */
static int h_get_stats(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = stats_json(&ctl.vm);
	return 0;
}

static int apply_sections(json_t *root, struct reply *r);

static json_t *vm_config_json(void)
{
	machine_config();
	json_t *c = json_deep_copy(ctl.config);
	/* The lists are always present, like Firecracker's answer. */
	if (!json_object_get(c, "drives"))
		json_object_set_new(c, "drives", json_array());
	if (!json_object_get(c, "network-interfaces"))
		json_object_set_new(c, "network-interfaces", json_array());
	return c;
}

static int h_get_vm_config(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = vm_config_json();
	return 0;
}

/* ---- snapshots (docs/snapshots.md) ---- */

/* The configuration a snapshot or a migration carries (malloc'd JSON, or NULL):
 * the VM's, without the process-wide logger and metrics, which stay with the
 * process that set them. */
static char *portable_config(void)
{
	json_t *conf = vm_config_json();
	json_object_del(conf, "logger");
	json_object_del(conf, "metrics");
	char *s = json_dumps(conf, JSON_COMPACT);
	json_decref(conf);
	return s;
}

static int h_put_snapshot_create(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	if (ctl.state != PAUSED)
		return fault(r, "Cannot create a snapshot of a running microVM: pause it first (PATCH /vm).");
	if (migration_busy())
		return fault(r, "Cannot create a snapshot while a migration is running.");
	const char *type = json_string_value(json_object_get(b, "snapshot_type"));
	bool diff = type && strcmp(type, "Diff") == 0;
	char *s = portable_config();
	struct kite_err err = {0};
	int rc = s ? snapshot_create(&ctl.vm, s, json_string_value(json_object_get(b, "snapshot_path")),
				     json_string_value(json_object_get(b, "mem_file_path")), diff, &err)
		   : err_set(&err, KITE_EXIT_ERROR, "out of memory");
	free(s);
	if (rc < 0)
		return fault(r, "Cannot create the snapshot: %s", err.msg);
	return 0;
}

/* The saved configuration with the load request's overrides applied. */
static int snapshot_overrides(json_t *conf, const json_t *b, struct reply *r)
{
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(b, "network_overrides"), i, o) {
		const char *iface = json_string_value(json_object_get(o, "iface_id"));
		size_t k;
		json_t *nic, *found = NULL;
		json_array_foreach(json_object_get(conf, "network-interfaces"), k, nic)
			if (strcmp(json_string_value(json_object_get(nic, "iface_id")), iface) == 0)
				found = nic;
		if (!found)
			return fault(r, "Cannot load the snapshot: network_overrides names interface '%s', which the "
					"snapshot's microVM does not have.", iface);
		json_object_set(found, "host_dev_name", json_object_get(o, "host_dev_name"));
	}
	const json_t *vo = json_object_get(b, "vsock_override");
	if (vo) {
		json_t *vs = json_object_get(conf, "vsock");
		if (!vs)
			return fault(r, "Cannot load the snapshot: vsock_override given, but the snapshot's microVM "
					"has no vsock device.");
		json_object_set(vs, "uds_path", json_object_get(vo, "uds_path"));
	}
	/* Dirty page tracking is the loader's choice, not the snapshot's. */
	bool track = json_is_true(json_object_get(b, "track_dirty_pages")) ||
		     json_is_true(json_object_get(b, "enable_diff_snapshots"));
	json_t *mc = json_object_get(conf, "machine-config");
	if (mc)
		json_object_set_new(mc, "track_dirty_pages", json_boolean(track));
	json_object_del(conf, "logger");
	json_object_del(conf, "metrics");
	return 0;
}

/* Nothing of a failed load or migration stays configured: the process may try again. */
static void restored_reset(void)
{
	json_t *keep_logger = json_incref(json_object_get(ctl.config, "logger"));
	json_t *keep_metrics = json_incref(json_object_get(ctl.config, "metrics"));
	json_decref(ctl.config);
	ctl.config = json_object();
	if (keep_logger)
		json_object_set_new(ctl.config, "logger", keep_logger);
	if (keep_metrics)
		json_object_set_new(ctl.config, "metrics", keep_metrics);
	ctl.configured = false;
	ctl.cfg.restore = NULL;
	ctl.cfg.restoring = false;
	ctl.cfg.restore_mem_base = NULL;
}

/* Builds the VM a snapshot or a migration carries, not yet running: its
 * configuration (with the load request's overrides, when there is one) through
 * the API's own handlers, then machine_prepare in restore mode. RAM comes from
 * mem_fd (a memory file) or mem_base (filled by a migration or a userfaultfd,
 * taken over by the VM). On failure nothing stays configured and mem_base is
 * unmapped. */
static int restored_prepare(const char *conf_s, const json_t *body, int mem_fd, void *mem_base, uint64_t bytes,
			    bool resume, bool clock_realtime, struct reply *r)
{
	json_error_t je;
	json_t *conf = json_loads(conf_s, JSON_REJECT_DUPLICATES, &je);
	struct kite_err err = {0};
	int rc = -1;
	if (!json_is_object(conf)) {
		fault(r, "Cannot load the snapshot: it holds no valid VM configuration.");
		goto fail;
	}
	if (snapshot_overrides(conf, body, r) < 0 || apply_sections(conf, r) < 0) {
		if (!strstr(r->fault, "snapshot")) {
			char f[sizeof(r->fault)];
			snprintf(f, sizeof(f), "%s", r->fault);
			fault(r, "Cannot load the snapshot: its configuration: %.340s", f);
		}
		goto fail;
	}
	if ((uint64_t)json_integer_value(json_object_get(machine_config(), "mem_size_mib")) << 20 != bytes) {
		fault(r, "Cannot load the snapshot: its configuration and its memory disagree on the size.");
		goto fail;
	}
	if (build_vm_config(r) < 0)
		goto fail;
	ctl.cfg.restoring = true;
	ctl.cfg.restore_mem_fd = mem_fd;
	ctl.cfg.restore_mem_base = mem_base;
	ctl.cfg.restore_clock_realtime = clock_realtime;
	ctl.cfg.start_paused = !resume;
	vm_init(&ctl.vm);
	if (machine_prepare(&ctl.vm, &ctl.cfg, &err) < 0) {
		ctl.start_code = err.code;
		fault(r, "Cannot load the snapshot: %s", err.msg);
		mem_base = NULL; /* vm_destroy unmapped it */
		goto fail;
	}
	rc = 0;
	goto out;
fail:
	if (mem_base)
		munmap(mem_base, bytes);
	restored_reset();
out:
	json_decref(conf);
	return rc;
}

/* Sets snap's state on the VM restored_prepare made and lets it run. */
static int restored_finish(const struct snap_reader *snap, bool resume, struct reply *r)
{
	struct kite_err err = {0};
	ctl.cfg.restore = snap;
	int rc = machine_finish(&ctl.vm, &err);
	if (rc < 0) {
		ctl.start_code = err.code;
		fault(r, "Cannot load the snapshot: %s", err.msg);
		restored_reset();
		return -1;
	}
	ctl.cfg.restore = NULL;
	ctl.cfg.restore_mem_base = NULL;
	ctl.state = resume ? RUNNING : PAUSED;
	ctl.started = true;
	metrics_set_vm(&ctl.vm);
	pthread_cond_broadcast(&ctl.cond);
	return 0;
}

static int start_restored(const char *conf_s, const json_t *body, int mem_fd, void *mem_base, uint64_t bytes,
			  const struct snap_reader *snap, bool resume, bool clock_realtime, struct reply *r)
{
	if (restored_prepare(conf_s, body, mem_fd, mem_base, bytes, resume, clock_realtime, r) < 0)
		return -1;
	return restored_finish(snap, resume, r);
}

static int h_put_snapshot_load(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	if (ctl.configured || migration_busy())
		return fault(r, "Loading a snapshot is only allowed before anything but the logger and metrics "
				"is configured.");
	const json_t *backend = json_object_get(b, "mem_backend");
	const char *mem_path = json_string_value(json_object_get(b, "mem_file_path"));
	if (!!backend == !!mem_path)
		return fault(r, "Cannot load the snapshot: give exactly one of mem_backend and mem_file_path.");
	bool uffd = false;
	if (backend) {
		uffd = strcmp(json_string_value(json_object_get(backend, "backend_type")), "Uffd") == 0;
		mem_path = json_string_value(json_object_get(backend, "backend_path"));
	}
	const char *hp = json_string_value(json_object_get(b, "huge_pages"));
	if (hp && strcmp(hp, "Snapshot") != 0 && strcmp(hp, "None") != 0)
		return fault(r, "Cannot load the snapshot: huge_pages %s is not supported by kite's snapshot loads yet "
				"(Snapshot or None).",
			     hp);

	const char *path = json_string_value(json_object_get(b, "snapshot_path"));
	struct snap_reader snap;
	struct kite_err err = {0};
	char *conf_s = NULL;
	uint64_t bytes = 0;
	if (snapshot_open(path, &snap, &conf_s, &bytes, &err) < 0)
		return fault(r, "Cannot load the snapshot: %s", err.msg);
	int rc = -1, fd = -1, ufd = -1;
	void *base = NULL;
	bool resume = json_is_true(json_object_get(b, "resume_vm"));
	bool realtime = json_is_true(json_object_get(b, "clock_realtime"));
	if (uffd) {
		/* Pages come from the handler on first touch, the state from the file now. */
		if (snapshot_uffd_memory(mem_path, bytes, &base, &ufd, &err) < 0)
			fault(r, "Cannot load the snapshot: %s", err.msg);
		else {
			ctl.cfg.restore_mem_uffd = true;
			rc = start_restored(conf_s, b, -1, base, bytes, &snap, resume, realtime, r);
			ctl.cfg.restore_mem_uffd = false;
		}
		if (rc == 0)
			ctl.uffd = ufd; /* registered for the VM's life */
		else if (ufd >= 0)
			close(ufd);
	} else if ((fd = snapshot_open_mem(mem_path, bytes, &err)) < 0) {
		fault(r, "Cannot load the snapshot: %s", err.msg);
	} else {
		rc = start_restored(conf_s, b, fd, NULL, bytes, &snap, resume, realtime, r);
	}
	if (fd >= 0)
		close(fd);
	free(conf_s);
	snapr_free(&snap);
	return rc;
}

/* ---- live migration (docs/migration.md) ---- */

/* The receiving thread's callbacks. The configuration has arrived: build the VM
 * around the memory the pages will land in, so that once the last page and the
 * state are there only the state remains to set (a shorter pause). */
static int mig_prepare(const char *config_json, void *mem, uint64_t bytes, struct kite_err *err)
{
	struct reply r = {0};
	pthread_mutex_lock(&ctl.lock);
	int rc;
	if (ctl.state != NOT_STARTED || ctl.configured) {
		munmap(mem, bytes);
		rc = err_set(err, KITE_EXIT_USAGE, "this kite was configured while it received the VM");
	} else {
		rc = restored_prepare(config_json, NULL, -1, mem, bytes, true, false, &r);
		if (rc < 0)
			err_set(err, KITE_EXIT_ERROR, "%s", r.fault);
	}
	pthread_mutex_unlock(&ctl.lock);
	return rc;
}

/* The stream is whole and checked: set the state and run. */
static int mig_finish(const struct snap_reader *state, struct kite_err *err)
{
	struct reply r = {0};
	pthread_mutex_lock(&ctl.lock);
	int rc = restored_finish(state, true, &r);
	if (rc < 0)
		err_set(err, KITE_EXIT_ERROR, "%s", r.fault);
	pthread_mutex_unlock(&ctl.lock);
	return rc;
}

/* The stream failed after mig_prepare: the VM that never ran goes. */
static void mig_abort(const char *why)
{
	struct kite_err err = {0};
	err_set(&err, KITE_EXIT_ERROR, "migration failed: %s", why);
	pthread_mutex_lock(&ctl.lock);
	machine_abort(&ctl.vm, &err);
	vm_init(&ctl.vm);
	restored_reset();
	pthread_mutex_unlock(&ctl.lock);
}

static const struct mig_dest_ops mig_ops = {.prepare = mig_prepare, .finish = mig_finish, .abort = mig_abort};

static int h_put_migration_receive(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	if (ctl.configured)
		return fault(r, "Receiving a migration is only allowed before anything but the logger and metrics "
				"is configured.");
	struct kite_err err = {0};
	if (migration_listen(json_string_value(json_object_get(b, "listen")), &mig_ops, &err) < 0)
		return fault(r, "Cannot receive a migration: %s", err.msg);
	return 0;
}

static int h_put_migration_send(const json_t *b, const char *id, struct reply *r)
{
	(void)id;
	const json_t *dt = json_object_get(b, "downtime_ms"), *mr = json_object_get(b, "max_rounds");
	char *s = portable_config();
	struct kite_err err = {0};
	int rc = s ? migration_send(&ctl.vm, s, json_string_value(json_object_get(b, "destination")),
				    dt ? (unsigned)json_integer_value(dt) : 300, mr ? (unsigned)json_integer_value(mr) : 30,
				    &err)
		   : err_set(&err, KITE_EXIT_ERROR, "out of memory");
	free(s);
	if (rc < 0)
		return fault(r, "Cannot migrate: %s", err.msg);
	return 0;
}

static int h_get_migration(const json_t *b, const char *id, struct reply *r)
{
	(void)b;
	(void)id;
	r->body = migration_status_json();
	return 0;
}

static const struct route routes[] = {
	{"GET", "/", NULL, h_get_root, M_GET_INSTANCE, ANY},
	{"GET", "/version", NULL, h_get_version, M_GET_VERSION, ANY},
	{"PUT", "/actions", "InstanceActionInfo", h_put_actions, M_PUT_ACTIONS, ANY},
	{"PUT", "/boot-source", "BootSource", h_put_boot_source, M_PUT_BOOT_SOURCE, PRE_BOOT},
	{"GET", "/machine-config", NULL, h_get_machine_config, M_GET_MACHINE_CONFIG, ANY},
	{"PUT", "/machine-config", "MachineConfiguration", h_put_machine_config, M_PUT_MACHINE_CONFIG, PRE_BOOT},
	{"PATCH", "/machine-config", "MachineConfiguration", h_patch_machine_config, M_PATCH_MACHINE_CONFIG, PRE_BOOT},
	{"PUT", "/cpu-config", "CpuConfig", h_put_cpu_config, M_PUT_CPU_CONFIG, PRE_BOOT},
	{"PUT", "/drives/", "Drive", h_put_drive, M_PUT_DRIVE, PRE_BOOT},
	{"PATCH", "/drives/", "PartialDrive", h_patch_drive, M_PATCH_DRIVE, POST_BOOT},
	{"PUT", "/network-interfaces/", "NetworkInterface", h_put_net, M_PUT_NET, PRE_BOOT},
	{"PATCH", "/network-interfaces/", "PartialNetworkInterface", h_patch_net, M_PATCH_NET, POST_BOOT},
	{"PUT", "/vsock", "Vsock", h_put_vsock, M_PUT_VSOCK, PRE_BOOT},
	{"PUT", "/entropy", "EntropyDevice", h_put_entropy, M_PUT_ENTROPY, PRE_BOOT},
	{"GET", "/balloon", NULL, h_get_balloon, M_GET_BALLOON, ANY},
	{"PUT", "/balloon", "Balloon", h_put_balloon, M_PUT_BALLOON, PRE_BOOT},
	{"PATCH", "/balloon", "BalloonUpdate", h_patch_balloon, M_PATCH_BALLOON, ANY},
	{"GET", "/balloon/statistics", NULL, h_get_balloon_stats, M_GET_BALLOON, ANY},
	{"PATCH", "/balloon/statistics", "BalloonStatsUpdate", h_patch_balloon_stats, M_PATCH_BALLOON, ANY},
	{"PUT", "/logger", "Logger", h_put_logger, M_PUT_LOGGER, PRE_BOOT},
	{"PUT", "/metrics", "Metrics", h_put_metrics, M_PUT_METRICS, PRE_BOOT},
	{"PATCH", "/vm", "Vm", h_patch_vm, M_PATCH_VM, POST_BOOT},
	{"GET", "/vm/config", NULL, h_get_vm_config, M_GET_VM_CONFIG, ANY},
	{"GET", "/stats", NULL, h_get_stats, M_GET_STATS, POST_BOOT},
	{"PUT", "/serial", "SerialDevice", h_put_serial, M_PUT_SERIAL, PRE_BOOT},
	{"PUT", "/snapshot/create", "SnapshotCreateParams", h_put_snapshot_create, M_PUT_SNAPSHOT_CREATE, POST_BOOT},
	{"PUT", "/snapshot/load", "SnapshotLoadParams", h_put_snapshot_load, M_PUT_SNAPSHOT_LOAD, PRE_BOOT},
	{"PUT", "/migration/receive", "MigrationReceive", h_put_migration_receive, M_PUT_MIGRATION, PRE_BOOT},
	{"PUT", "/migration/send", "MigrationSend", h_put_migration_send, M_PUT_MIGRATION, POST_BOOT},
	{"GET", "/migration", NULL, h_get_migration, M_GET_MIGRATION, ANY},
};

/* The route for method+path, with the {id} of prefix routes. */
static const struct route *route_find(const char *method, const char *path, const char **id)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		if (strcmp(rt->method, method) != 0)
			continue;
		size_t n = strlen(rt->path);
		if (n > 1 && rt->path[n - 1] == '/') {
			if (strncmp(path, rt->path, n) == 0 && path[n] && !strchr(path + n, '/')) {
				*id = path + n;
				return rt;
			}
		} else if (strcmp(path, rt->path) == 0) {
			*id = NULL;
			return rt;
		}
	}
	return NULL;
}

/* Firecracker reads a member set to null as absent (and writes absent ones as
 * null itself): drop them, at every depth, before validating. */
static void strip_nulls(json_t *v, int depth)
{
	if (depth > 16)
		return;
	if (json_is_object(v)) {
		const char *key;
		json_t *m;
		void *tmp;
		json_object_foreach_safe(v, tmp, key, m) {
			if (json_is_null(m))
				json_object_del(v, key);
			else
				strip_nulls(m, depth + 1);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *m;
		json_array_foreach(v, i, m)
			strip_nulls(m, depth + 1);
	}
}

static int dispatch(const char *method, const char *path, const char *body, size_t body_len,
		    struct reply *r)
{
	const char *id = NULL;
	const struct route *rt = route_find(method, path, &id);
	if (!rt)
		return fault(r, "Invalid request method and/or path: %s %s.", method, path);
	metrics_count(rt->metric);
	json_t *json = NULL;
	if (rt->schema) {
		json_error_t je;
		if (body_len == 0)
			return fault(r, "The request body is empty; %s needs a JSON object.", path);
		json = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &je);
		if (!json)
			return fault(r, "Invalid JSON at line %d, column %d: %s.", je.line, je.column, je.text);
		strip_nulls(json, 0);
		char msg[300];
		if (schema_validate(schema_find(rt->schema), json, msg, sizeof(msg)) < 0) {
			json_decref(json);
			return fault(r, "%s %s: %s.", method, path, msg);
		}
	}
	char what[HTTP_MAX_URL + 16];
	snprintf(what, sizeof(what), "%s %s", method, path);
	int ret = -1;
	if ((rt->when == PRE_BOOT && pre_boot(r, what) < 0) ||
	    (rt->when == POST_BOOT && post_boot(r, what) < 0))
		goto out;
	r->status = 204;
	ret = rt->handler(json, id, r);
	if (ret == 0 && rt->when == PRE_BOOT && rt->metric != M_PUT_LOGGER && rt->metric != M_PUT_METRICS &&
	    rt->metric != M_PUT_MIGRATION)
		ctl.configured = true;
out:
	json_decref(json);
	if (ret == 0 && r->body)
		r->status = 200;
	if (ret < 0)
		metrics_count(M_API_FAILURES);
	return ret;
}

static void api_handle(void *ctx, const struct http_request *req, struct http_response *resp)
{
	(void)ctx;
	struct reply r = {.status = 500};
	pthread_mutex_lock(&ctl.lock);
	dispatch(req->method, req->path, req->body, req->body_len, &r);
	pthread_mutex_unlock(&ctl.lock);
	resp->status = r.status;
	if (r.status == 400 || r.status == 500) {
		resp->body = http_fault_body("%s", r.fault[0] ? r.fault : "Internal error.");
		log_warn("API %s %s: %s", req->method, req->path, r.fault);
	} else if (r.body) {
		resp->body = json_dumps(r.body, JSON_COMPACT);
		json_decref(r.body);
	}
}

/* ---- --config-file ---- */

/* The sections of a FullVmConfiguration (as GET /vm/config writes it, with
 * kite's "serial"), applied through the API's own handlers. */
static int apply_sections(json_t *root, struct reply *r)
{
	static const struct {
		const char *key, *method, *path;
	} order[] = {
		{"logger", "PUT", "/logger"}, {"metrics", "PUT", "/metrics"},
		{"machine-config", "PUT", "/machine-config"}, {"cpu-config", "PUT", "/cpu-config"},
		{"boot-source", "PUT", "/boot-source"}, {"vsock", "PUT", "/vsock"},
		{"entropy", "PUT", "/entropy"}, {"balloon", "PUT", "/balloon"},
		{"serial", "PUT", "/serial"},
	};
	char fault_msg[sizeof(r->fault)];
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		json_t *sec = json_object_get(root, order[i].key);
		if (!sec)
			continue;
		char *s = json_dumps(sec, JSON_COMPACT);
		int rc = dispatch(order[i].method, order[i].path, s, strlen(s), r);
		free(s);
		if (rc < 0) {
			snprintf(fault_msg, sizeof(fault_msg), "%s: %.370s", order[i].key, r->fault);
			snprintf(r->fault, sizeof(r->fault), "%s", fault_msg);
			return -1;
		}
	}
	static const struct {
		const char *key, *id, *path;
	} lists[] = {{"drives", "drive_id", "/drives/"}, {"network-interfaces", "iface_id", "/network-interfaces/"}};
	for (size_t i = 0; i < 2; i++) {
		size_t k;
		json_t *it;
		json_array_foreach(json_object_get(root, lists[i].key), k, it) {
			char p[300], *s = json_dumps(it, JSON_COMPACT);
			snprintf(p, sizeof(p), "%s%s", lists[i].path, json_string_value(json_object_get(it, lists[i].id)));
			int rc = dispatch("PUT", p, s, strlen(s), r);
			free(s);
			if (rc < 0) {
				snprintf(fault_msg, sizeof(fault_msg), "%s: %.370s", lists[i].key, r->fault);
				snprintf(r->fault, sizeof(r->fault), "%s", fault_msg);
				return -1;
			}
		}
	}
	return 0;
}

/* FullVmConfiguration sections, applied through the same handlers as the API. */
static int apply_config_file(const char *path, struct kite_err *err)
{
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return err_set(err, KITE_EXIT_USAGE, "--config-file '%s': %s (line %d)", path, je.text, je.line);
	char msg[300];
	struct reply r = {0};
	int ret = -1;
	/* Firecracker writes absent sections as null: drop them before validating. */
	strip_nulls(root, 0);
	/* "serial" is kite's, beyond FullVmConfiguration: GET /vm/config shows what
	 * PUT /serial set, so a config file must take it back (apply_sections does). */
	json_t *sections = json_deep_copy(root);
	json_object_del(sections, "serial");
	int bad = schema_validate(schema_find("FullVmConfiguration"), sections, msg, sizeof(msg));
	json_decref(sections);
	/* Sections the contract has and kite cannot do yet are refused, never ignored. */
	static const char *const unsupported[] = {"pmem", "mmds-config", "memory-hotplug"};
	for (size_t i = 0; !bad && i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		json_t *sec = json_object_get(root, unsupported[i]);
		if (sec && !(json_is_array(sec) && json_array_size(sec) == 0)) {
			err_set(err, KITE_EXIT_USAGE, "--config-file '%s': %s is not supported by kite yet", path,
				unsupported[i]);
			goto out;
		}
	}
	if (bad) {
		err_set(err, KITE_EXIT_USAGE, "--config-file '%s': %s", path, msg);
		goto out;
	}
	if (apply_sections(root, &r) < 0) {
		err_set(err, KITE_EXIT_USAGE, "--config-file '%s': %s", path, r.fault);
		goto out;
	}
	if (instance_start(&r) < 0) {
		/* A missing kernel exits 4 here as with `kite run`. */
		err_set(err, ctl.start_code ? ctl.start_code : KITE_EXIT_USAGE, "--config-file '%s': %s", path,
			r.fault);
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

/* ---- the process ---- */

static void on_signal(void *ctx, int sig)
{
	(void)ctx;
	pthread_mutex_lock(&ctl.lock);
	if (ctl.started) {
		vm_request_stop(&ctl.vm, 128 + sig, "stopped by signal %s", strsignal(sig));
	} else {
		ctl.quit = true;
		ctl.quit_code = 128 + sig;
		log_info("stopped by signal %s before the microVM started", strsignal(sig));
		pthread_cond_broadcast(&ctl.cond);
	}
	pthread_mutex_unlock(&ctl.lock);
}

int api_main(const struct api_opts *o)
{
	struct kite_err err = {0};
	struct stop_signals sigs;
	struct http_server *srv = NULL;
	int code;

	ctl.opts = o;
	ctl.config = json_object();
	vm_init(&ctl.vm);
	stop_signals_start(&sigs, on_signal, NULL);
	metrics_init(o->exec_time);
	if (o->metrics_path && metrics_open(o->metrics_path) < 0) {
		err_set(&err, KITE_EXIT_USAGE, "--metrics-path '%s': %s", o->metrics_path, strerror(errno));
		goto fail;
	}
	if (o->api_sock) {
		srv = http_server_start(o->api_sock, api_handle, NULL, &err);
		if (!srv)
			goto fail;
	}
	if (o->config_file) {
		pthread_mutex_lock(&ctl.lock);
		int rc = apply_config_file(o->config_file, &err);
		pthread_mutex_unlock(&ctl.lock);
		if (rc < 0)
			goto fail;
	}

	pthread_mutex_lock(&ctl.lock);
	while (!ctl.started && !ctl.quit)
		pthread_cond_wait(&ctl.cond, &ctl.lock);
	bool started = ctl.started;
	pthread_mutex_unlock(&ctl.lock);
	if (started) {
		/* The API goes first, so no request can reach a VM being torn down. */
		pthread_mutex_lock(&ctl.vm.stop.lock);
		while (!ctl.vm.stop.requested)
			pthread_cond_wait(&ctl.vm.stop.cond, &ctl.vm.stop.lock);
		pthread_mutex_unlock(&ctl.vm.stop.lock);
		http_server_stop(srv);
		metrics_flush(); /* the last line still sees the VM's counters */
		metrics_set_vm(NULL);
		code = machine_wait(&ctl.vm);
	} else {
		http_server_stop(srv);
		metrics_flush();
		code = ctl.quit_code;
	}
	stop_signals_stop(&sigs);
	return code;
fail:
	fprintf(stderr, "kite: error: %s\n", err.msg);
	http_server_stop(srv);
	stop_signals_stop(&sigs);
	return err.code ? err.code : KITE_EXIT_ERROR;
}

