/* Builds a VM from a config, runs it to the end, returns the process exit code. */
#ifndef KITE_MACHINE_H
#define KITE_MACHINE_H

#include "vmm/vm.h"

/* Reads a whole file (kernel, initrd). Errors: KITE_EXIT_IMAGE naming `what`. */
int read_file(const char *path, const char *what, uint8_t **buf, size_t *len, size_t max,
	      struct kite_err *err);

int machine_run(const struct vm_config *cfg);

#endif
