/* Snapshots: a paused VM into a state file and a memory file, and back into a
 * fresh process (docs/snapshots.md). */
#ifndef KITE_SNAPSHOT_H
#define KITE_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/snapfile.h"
#include "vmm/vm.h"

/* Writes the state (config_json: the VM's configuration as GET /vm/config shows
 * it, kept for the restore) and guest memory of a paused VM. Full: every page
 * that is not zero (the file is sparse); diff: only pages written since the last
 * snapshot or the start (needs cfg->track_dirty), at their offsets in a sparse
 * file the size of RAM, to be folded onto its base (snapshot_fold). Both files
 * are written beside their paths and renamed into place at the end: a failed
 * snapshot leaves the old files as they were. */
int snapshot_create(struct vm *vm, const char *config_json, const char *state_path,
		    const char *mem_path, bool diff, struct kite_err *err);

/* Reads and checks a state file; *config_json (malloc'd) is the configuration
 * to rebuild the VM from, *mem_bytes its RAM size. */
int snapshot_open(const char *state_path, struct snap_reader *r, char **config_json,
		  uint64_t *mem_bytes, struct kite_err *err);

/* Opens a memory file for a guest of mem_bytes: it must be exactly that long. */
int snapshot_open_mem(const char *mem_path, uint64_t mem_bytes, struct kite_err *err);

/* The Uffd memory backend (Firecracker's protocol): anonymous guest memory
 * registered with a userfaultfd, which goes with the regions' mappings (JSON:
 * base_host_virt_addr, size, offset, page_size) to the handler listening on uds.
 * The handler then fills every page on first touch. *base_out: the memory (the
 * VM takes it over), *uffd_out: kept open for the VM's life. */
int snapshot_uffd_memory(const char *uds, uint64_t bytes, void **base_out, int *uffd_out, struct kite_err *err);

/* Restore mode of machine_start: vCPU and device state from cfg->restore onto
 * the VM, after devices_create and vcpus_create. */
int snapshot_restore(struct vm *vm, struct kite_err *err);

/* KVM's dirty log of every memslot (read and cleared) ORed into bitmap, bit i
 * being 4 KiB page i of RAM in the host mapping's order. Slots must log. */
int snapshot_dirty_log(struct vm *vm, uint64_t *bitmap, struct kite_err *err);

/* `kite snapshot-fold BASE DIFF`: copies the pages a diff memory file holds onto
 * its base memory file (same size), so the base becomes the memory of the diff's
 * snapshot. Returns the exit code. */
int snapshot_fold_main(int argc, char **argv);

#endif
