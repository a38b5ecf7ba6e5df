/* Inside the gdb stub: its state, shared by the connection side (stub.c: socket,
 * packets, commands) and the target side (target.c: vCPUs, registers, guest memory,
 * breakpoints, guest debugging). */
#ifndef KITE_GDB_STUB_H
#define KITE_GDB_STUB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "gdb/bp.h"
#include "gdb/gdb.h"
#include "gdb/packet.h"
#include "gdb/regs.h"

/* What a resume asks of one vCPU. */
enum gdb_action { GDB_ACT_HOLD, GDB_ACT_CONT, GDB_ACT_STEP };

struct gdb_stub {
	struct vm *vm;
	pthread_t thread;
	bool thread_started;
	int listen_fd, client_fd, wake_fd;
	char where[160];          /* the listening address, for messages */
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unlinked at the end */
	unsigned debug_caps;      /* KVM_CAP_SET_GUEST_DEBUG2: supported control bits */

	/* Under lock: what vCPU threads read or write at their debug exits. The stub
	 * thread changes the breakpoints only while every vCPU is parked. */
	pthread_mutex_t lock;
	bool quit;
	struct gdb_event *pending; /* per vCPU: a stop not reported yet */
	bool *stepping;            /* per vCPU: resumed to single-step */
	struct gdb_bps bps;

	/* The stub thread's own. */
	bool attached;   /* a debugger is connected and has not detached */
	bool running;    /* vCPUs released; gdb waits for a stop reply */
	unsigned g_cpu;  /* Hg: registers and memory */
	int c_cpu;       /* Hc: legacy c/s; -1 all */
	unsigned focus;  /* the vCPU a Ctrl-C stop names: the one last stepped, else vCPU 0 */
	char last_stop[96];
	struct gdb_rx rx;
	char tx[2 * GDB_PACKET_MAX + 8]; /* the last packet sent, framed, for a '-' */
	int tx_len;
};

/* target.c: all of these run on the stub thread with the vCPUs parked, except
 * gdb_target_stop_all/resume, which park and release them. */
void gdb_target_stop_all(struct gdb_stub *s);
/* Releases the vCPUs per act[] (one per vCPU); HOLD keeps one parked. Returns
 * true when it did; false when a stop was already pending for a vCPU being
 * resumed, whose reply is then in reply (the vCPUs stay parked). */
bool gdb_target_resume(struct gdb_stub *s, const enum gdb_action *act, char *reply, size_t len);
/* After a stop: takes one pending event into a stop reply ("T05thread:..;").
 * Returns false when no vCPU has one. */
bool gdb_target_take_event(struct gdb_stub *s, char *reply, size_t len);
int gdb_target_get_cpu(struct gdb_stub *s, unsigned cpu, struct gdb_cpu *c);
int gdb_target_set_cpu(struct gdb_stub *s, unsigned cpu, const struct gdb_cpu *c);
/* Reads up to len bytes at a guest-virtual address through cpu's page tables;
 * returns how many (0: the first byte is not mapped). Planted breakpoints read as
 * the bytes they replaced. */
size_t gdb_target_read(struct gdb_stub *s, unsigned cpu, uint64_t gva, uint8_t *buf, size_t len);
/* Writes all len bytes or none: 0 or -1. */
int gdb_target_write(struct gdb_stub *s, unsigned cpu, uint64_t gva, const uint8_t *buf, size_t len);
/* Z/z packets: type '0'..'4'. 0, or -1 (not mapped, no room, bad kind). */
int gdb_target_insert(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind);
int gdb_target_remove(struct gdb_stub *s, char type, uint64_t addr, uint64_t kind);
/* Removes every breakpoint and watchpoint and turns guest debugging off. */
void gdb_target_clear(struct gdb_stub *s);

#endif
