/* Live migration over TCP (docs/migration.md): pre-copy rounds driven by the
 * dirty log, a short pause for the last pages and the state, the destination
 * resumes, the source exits. One migration per process, either way. */
#ifndef KITE_MIGRATE_H
#define KITE_MIGRATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/snapfile.h"
#include "vmm/vm.h"

#define MIG_MAGIC "KITEMIGR"
#define MIG_VERSION 1u

/* The stream: header (magic, u32 version, u32 flags 0), then messages, each
 * u32 type | u32 0 | u64 length | payload | u64 CRC-64 of the 16-byte head and
 * the payload. The destination answers the END message with one byte: 'K'
 * when the guest runs there, 'F' when it does not. */
enum mig_msg {
	MIG_CONFIG = 1, /* u64 RAM bytes, then the VM's configuration as JSON */
	MIG_PAGES = 2,  /* repeated: u64 page index, 4096 bytes */
	MIG_STATE = 3,  /* a sealed state file (snapfile.h) */
	MIG_END = 4,
};

#define MIG_MAX_PAYLOAD (SNAP_MAX_FILE)
#define MIG_PAGES_PER_MSG 256u

/* Before seccomp (machine_start): the source's worker thread, idle until
 * migration_send; stopped by migration_stop at teardown. */
int migration_prepare(struct vm *vm, struct kite_err *err);
void migration_stop(struct vm *vm);

/* Source: starts sending the running (or paused) VM to dest ("IPv4:PORT" or
 * "[IPv6]:PORT", numeric). config_json is the VM's configuration (kept by the
 * worker). Returns at once; progress in migration_status_json(). On success the
 * VM is stopped with exit code 0; on failure it runs on where it was. */
int migration_send(struct vm *vm, const char *config_json, const char *dest, unsigned downtime_ms,
		   unsigned max_rounds, struct kite_err *err);

/* Destination: listens on addr (numeric, as above) and receives one VM, with
 * these callbacks on the receiving thread: prepare when the configuration has
 * arrived (build the VM around mem, an anonymous mapping of mem_bytes the pages
 * then land in; the VM takes it over, or prepare unmaps it on failure); finish
 * when the whole stream has arrived and checked out (set the state, run; on
 * failure the VM is gone); abort when the stream fails after prepare. */
struct mig_dest_ops {
	int (*prepare)(const char *config_json, void *mem, uint64_t mem_bytes, struct kite_err *err);
	int (*finish)(const struct snap_reader *state, struct kite_err *err);
	void (*abort)(const char *why);
};
int migration_listen(const char *addr, const struct mig_dest_ops *ops, struct kite_err *err);

/* True while a migration runs (the API refuses pause/resume/snapshot then). */
bool migration_busy(void);

/* GET /migration. */
json_t *migration_status_json(void);

/* Parses "A.B.C.D:PORT" or "[v6]:PORT" into a sockaddr; 0 or -1 with err. */
struct sockaddr_storage;
int mig_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *len, struct kite_err *err);

#endif
