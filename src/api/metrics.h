/* Metrics as JSON lines, Firecracker style: one object per flush with the
 * counts since the previous flush, under Firecracker's group and counter names
 * where it has them. Flushed when the file is opened, every 60 s, on
 * FlushMetrics and at exit. */
#ifndef KITE_METRICS_H
#define KITE_METRICS_H

#include <time.h>

enum metric {
	M_GET_INSTANCE, M_GET_VERSION, M_GET_MACHINE_CONFIG, M_GET_VM_CONFIG, M_GET_BALLOON, M_GET_STATS,
	M_PUT_ACTIONS, M_PUT_BOOT_SOURCE, M_PUT_MACHINE_CONFIG, M_PUT_CPU_CONFIG, M_PUT_DRIVE,
	M_PUT_NET, M_PUT_VSOCK, M_PUT_ENTROPY, M_PUT_BALLOON, M_PUT_LOGGER, M_PUT_METRICS,
	M_PUT_SERIAL, M_PATCH_MACHINE_CONFIG, M_PATCH_DRIVE, M_PATCH_NET, M_PATCH_BALLOON,
	M_PATCH_VM, M_PUT_SNAPSHOT_CREATE, M_PUT_SNAPSHOT_LOAD, M_PUT_MIGRATION, M_GET_MIGRATION, M_API_FAILURES, M_COUNT
};

struct vm;

void metrics_init(struct timespec exec_time);
/* The running VM whose exit counters each line reports (NULL: none). */
void metrics_set_vm(struct vm *vm);
/* Opens (appends to) the metrics file or FIFO and writes a first line. */
int metrics_open(const char *path);
void metrics_count(enum metric m);
/* Writes one line; -1 when no metrics file is open. */
int metrics_flush(void);

#endif
