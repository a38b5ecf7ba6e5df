/* Inside the gdb stub: its state, shared by the connection side (stub.c: socket,
 * packets, commands) and the target side (target.c: vCPUs, registers, guest memory,
 * breakpoints, guest debugging). */
#ifndef KITE_GDB_STUB_H
#define KITE_GDB_STUB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "gdb/gdb.h"
#include "gdb/packet.h"
#include "gdb/regs.h"

#define GDB_MAX_SW_BP 64
#define GDB_HW_SLOTS 4 /* x86 debug registers DR0..DR3 */

enum gdb_stop_kind { GDB_STOP_NONE, GDB_STOP_SWBP, GDB_STOP_HWBP, GDB_STOP_WATCH, GDB_STOP_STEP };

/* Why a vCPU stopped, recorded by its thread at KVM_EXIT_DEBUG. */
struct gdb_event {
	enum gdb_stop_kind kind;
	uint64_t addr;  /* breakpoint address or watched address */
	char type;      /* the Z type of a hardware breakpoint or watchpoint: '1'..'4' */
	int slot;       /* the debug register that fired, or -1 */
};

/* A breakpoint the stub planted: 0xCC at gpa, the byte it replaced. */
struct gdb_sw_bp {
	uint64_t gva, gpa;
	uint8_t orig;
};

/* A Z1..Z4 request; a watched range may take several debug registers. */
struct gdb_hw_req {
	bool used;
	char type; /* '1' execute, '2' write, '3' read, '4' access */
	uint64_t addr, len;
	uint8_t slots; /* bit i: uses DRi */
};

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
	 * thread changes the tables only while every vCPU is parked. */
	pthread_mutex_t lock;
	bool quit;
	struct gdb_event *pending; /* per vCPU: a stop not reported yet */
	bool *stepping;            /* per vCPU: resumed to single-step */
	struct gdb_sw_bp sw[GDB_MAX_SW_BP];
	unsigned nr_sw;
	uint64_t dr[GDB_HW_SLOTS];
	uint64_t dr7;
	int slot_req[GDB_HW_SLOTS]; /* request using DRi, or -1 */
	struct gdb_hw_req hw[GDB_HW_SLOTS];

	/* The stub thread's own. */
	bool attached;   /* a debugger is connected and has not detached */
	bool running;    /* vCPUs released; gdb waits for a stop reply */
	unsigned g_cpu;  /* Hg: registers and memory */
	int c_cpu;       /* Hc: legacy c/s; -1 all */
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
