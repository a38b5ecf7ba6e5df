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

int machine_run(const struct vm_config *cfg);

#endif
