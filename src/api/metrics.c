#include "api/metrics.h"

#include "vmm/vm.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define FLUSH_PERIOD_S 60

/* group, name for each counter */
static const char *const names[M_COUNT][2] = {
	[M_GET_INSTANCE] = {"get_api_requests", "instance_info_count"},
	[M_GET_VERSION] = {"get_api_requests", "vmm_version_count"},
	[M_GET_MACHINE_CONFIG] = {"get_api_requests", "machine_cfg_count"},
	[M_GET_VM_CONFIG] = {"get_api_requests", "vm_config_count"},
	[M_GET_BALLOON] = {"get_api_requests", "balloon_count"},
	[M_GET_STATS] = {"get_api_requests", "stats_count"}, /* kite's own route */
	[M_PUT_ACTIONS] = {"put_api_requests", "actions_count"},
	[M_PUT_BOOT_SOURCE] = {"put_api_requests", "boot_source_count"},
	[M_PUT_MACHINE_CONFIG] = {"put_api_requests", "machine_cfg_count"},
	[M_PUT_CPU_CONFIG] = {"put_api_requests", "cpu_cfg_count"},
	[M_PUT_DRIVE] = {"put_api_requests", "drive_count"},
	[M_PUT_NET] = {"put_api_requests", "network_count"},
	[M_PUT_VSOCK] = {"put_api_requests", "vsock_count"},
	[M_PUT_ENTROPY] = {"put_api_requests", "entropy_count"},
	[M_PUT_BALLOON] = {"put_api_requests", "balloon_count"},
	[M_PUT_LOGGER] = {"put_api_requests", "logger_count"},
	[M_PUT_METRICS] = {"put_api_requests", "metrics_count"},
	[M_PUT_SERIAL] = {"put_api_requests", "serial_count"},
	[M_PATCH_MACHINE_CONFIG] = {"patch_api_requests", "machine_cfg_count"},
	[M_PATCH_DRIVE] = {"patch_api_requests", "drive_count"},
	[M_PATCH_NET] = {"patch_api_requests", "network_count"},
	[M_PATCH_BALLOON] = {"patch_api_requests", "balloon_count"},
	[M_PATCH_VM] = {"patch_api_requests", "vmm_count"},
	[M_PUT_SNAPSHOT_CREATE] = {"put_api_requests", "snapshot_create_count"},
	[M_PUT_SNAPSHOT_LOAD] = {"put_api_requests", "snapshot_load_count"},
	[M_PUT_MIGRATION] = {"put_api_requests", "migration_count"}, /* kite's own routes */
	[M_GET_MIGRATION] = {"get_api_requests", "migration_count"},
	[M_API_FAILURES] = {"kite", "api_request_failures"},
};

static struct {
	pthread_mutex_t lock;
	int fd;
	unsigned long long count[M_COUNT];
	struct timespec exec_time;
	pthread_t thread;
	bool thread_started;
	struct vm *vm;
	uint64_t last[5]; /* vCPU exit totals at the previous line */
} mt = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

void metrics_init(struct timespec exec_time) { mt.exec_time = exec_time; }

void metrics_set_vm(struct vm *vm)
{
	pthread_mutex_lock(&mt.lock);
	mt.vm = vm;
	memset(mt.last, 0, sizeof(mt.last));
	pthread_mutex_unlock(&mt.lock);
}

/* Firecracker's "vcpu" group, summed over vCPUs, as counts since the last line. */
static void vcpu_group(json_t *root)
{
	static const char *const exit_names[5] = {"exit_io_in", "exit_io_out", "exit_mmio_read",
					     "exit_mmio_write", "kite_exit_other"};
	uint64_t now[5] = {0};
	struct vm *vm = mt.vm;
	for (unsigned i = 0; vm && i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		now[0] += __atomic_load_n(&v->exits_io_in, __ATOMIC_RELAXED);
		now[1] += __atomic_load_n(&v->exits_io_out, __ATOMIC_RELAXED);
		now[2] += __atomic_load_n(&v->exits_mmio_read, __ATOMIC_RELAXED);
		now[3] += __atomic_load_n(&v->exits_mmio_write, __ATOMIC_RELAXED);
		now[4] += __atomic_load_n(&v->exits_other, __ATOMIC_RELAXED);
	}
	json_t *g = json_object();
	for (int i = 0; i < 5; i++) {
		json_object_set_new(g, exit_names[i], json_integer((json_int_t)(now[i] - mt.last[i])));
		mt.last[i] = now[i];
	}
	json_object_set_new(root, "vcpu", g);
}

void metrics_count(enum metric m)
{
	if (m < M_COUNT)
		__atomic_add_fetch(&mt.count[m], 1, __ATOMIC_RELAXED);
}

static json_t *group(json_t *root, const char *name)
{
	json_t *g = json_object_get(root, name);
	if (!g) {
		g = json_object();
		json_object_set_new(root, name, g);
	}
	return g;
}

int metrics_flush(void)
{
	pthread_mutex_lock(&mt.lock);
	if (mt.fd < 0) {
		pthread_mutex_unlock(&mt.lock);
		return -1;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	json_t *root = json_object();
	json_object_set_new(root, "utc_timestamp_ms",
			    json_integer((json_int_t)tv.tv_sec * 1000 + tv.tv_usec / 1000));
	for (int i = 0; i < M_COUNT; i++) {
		/* Counts since the last flush, as Firecracker reports them. */
		unsigned long long v = __atomic_exchange_n(&mt.count[i], 0, __ATOMIC_RELAXED);
		json_object_set_new(group(root, names[i][0]), names[i][1], json_integer((json_int_t)v));
	}
	vcpu_group(root);
	char *line = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	int r = -1;
	if (line) {
		size_t n = strlen(line);
		line[n] = '\n';
		r = write(mt.fd, line, n + 1) == (ssize_t)(n + 1) ? 0 : -1;
		free(line);
	}
	pthread_mutex_unlock(&mt.lock);
	return r;
}

static void *periodic(void *arg)
{
	(void)arg;
	for (;;) {
		sleep(FLUSH_PERIOD_S);
		metrics_flush();
	}
	return NULL;
}

int metrics_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
	if (fd < 0)
		return -1;
	pthread_mutex_lock(&mt.lock);
	if (mt.fd >= 0)
		close(mt.fd);
	mt.fd = fd;
	pthread_mutex_unlock(&mt.lock);
	metrics_flush();
	if (!mt.thread_started) {
		/* Detached: it only ever sleeps and writes a line. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		if (pthread_create(&mt.thread, NULL, periodic, NULL) == 0) {
			pthread_detach(mt.thread);
			mt.thread_started = true;
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	return 0;
}
