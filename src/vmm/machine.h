/* Builds a VM from a config, runs it to the end, returns the process exit code. */
#ifndef KITE_MACHINE_H
#define KITE_MACHINE_H

#include "vmm/vm.h"

struct mapped_file {
	const uint8_t *data;
	size_t len;
};

/* Maps a whole regular, non-empty file of at most max bytes read-only (kernel,
 * initrd). Errors: KITE_EXIT_IMAGE, naming `what` and the path. */
int map_file(const char *path, const char *what, struct mapped_file *f, uint64_t max,
	     struct kite_err *err);
void unmap_file(struct mapped_file *f);

/* Builds the VM and starts its vCPUs; on failure everything is torn down and
 * err says why. vm must have been through vm_init (again after a failure). */
int machine_start(struct vm *vm, const struct vm_config *cfg, struct kite_err *err);
/* machine_start in two halves, for a migration's destination, which builds
 * the VM when the configuration arrives and starts it when the state has:
 * prepare makes the VM, its memory, devices and vCPUs (and loads the kernel of a
 * fresh boot); finish restores cfg->restore's state if set, starts the threads,
 * locks down and lets the vCPUs in. On failure each has torn everything down.
 * abort tears down a VM that prepare made and finish was not called for
 * (err: why, for the log). */
int machine_prepare(struct vm *vm, const struct vm_config *cfg, struct kite_err *err);
int machine_finish(struct vm *vm, struct kite_err *err);
void machine_abort(struct vm *vm, struct kite_err *err);
/* Waits until the VM stops, tears it down, returns the process exit code. */
int machine_wait(struct vm *vm);
/* `kite run`: start, wait, with SIGINT/SIGTERM/SIGHUP stopping the VM. */
int machine_run(const struct vm_config *cfg);

/* The thread that turns SIGINT/SIGTERM/SIGHUP into on_signal(ctx, sig) calls;
 * blocks those signals in the calling thread (so in threads it creates later). */
struct stop_signals {
	pthread_t thread;
	bool started, done;
	void (*on_signal)(void *ctx, int sig);
	void *ctx;
};
void stop_signals_start(struct stop_signals *s, void (*on_signal)(void *ctx, int sig), void *ctx);
void stop_signals_stop(struct stop_signals *s);

#endif
