/* kite as Firecracker: the API socket, --config-file and the VM's lifecycle
 * driven through them. main() hands over the parsed flags. */
#ifndef KITE_API_H
#define KITE_API_H

#include "vmm/seccomp.h"
#include <stdbool.h>
#include <time.h>

struct api_opts {
	const char *api_sock;     /* NULL with --no-api */
	const char *config_file;  /* boot at once from this JSON */
	const char *id;           /* --id, reported by GET / */
	const char *metrics_path; /* --metrics-path */
	bool boot_timer;
	struct seccomp_opts seccomp;
	struct timespec exec_time;
};

/* Runs until the VM ends (or a signal, or a fatal error); returns the exit code. */
int api_main(const struct api_opts *o);

#endif
