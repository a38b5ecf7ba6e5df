/* The debugger's breakpoints as pure bookkeeping over guest memory: software
 * breakpoints (an INT3 planted at a guest-physical byte, the byte it replaced kept
 * aside), hardware breakpoints and watchpoints (x86 DR0..DR3 and DR7), and the
 * decision whether a debug exit is the debugger's or the guest's own. No KVM calls:
 * target.c applies the result to the vCPUs. Callers serialize access. */
#ifndef KITE_GDB_BP_H
#define KITE_GDB_BP_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

#define GDB_MAX_SW_BP 64
#define GDB_HW_SLOTS 4 /* DR0..DR3 */

enum gdb_stop_kind { GDB_STOP_NONE, GDB_STOP_SWBP, GDB_STOP_HWBP, GDB_STOP_WATCH, GDB_STOP_STEP };

/* Why a vCPU stopped. */
struct gdb_event {
	enum gdb_stop_kind kind;
	uint64_t addr; /* breakpoint address, or the watched address that fired */
	char type;     /* Z type of a hardware breakpoint or watchpoint: '1'..'4' */
	int slot;      /* the debug register that fired, or -1 */
};

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

struct gdb_bps {
	struct gdb_sw_bp sw[GDB_MAX_SW_BP];
	unsigned nr_sw;
	uint64_t dr[GDB_HW_SLOTS];
	uint64_t dr7;                /* enable, type and length bits only */
	int slot_req[GDB_HW_SLOTS]; /* the request using DRi, or -1 */
	struct gdb_hw_req hw[GDB_HW_SLOTS];
};

void gdb_bps_init(struct gdb_bps *b);

/* Plants INT3 at gpa for the breakpoint at gva (0 if there already is one).
 * -1 when the table is full or gpa is not RAM. */
int gdb_bps_plant(struct gdb_bps *b, const struct gmem *m, uint64_t gva, uint64_t gpa);
/* Removes the breakpoint at gva, restoring its byte unless the guest has
 * rewritten the INT3 meanwhile. No breakpoint there is fine. */
void gdb_bps_unplant(struct gdb_bps *b, const struct gmem *m, uint64_t gva);
void gdb_bps_unplant_all(struct gdb_bps *b, const struct gmem *m);
bool gdb_bps_has_sw(const struct gdb_bps *b, uint64_t gva);
/* buf holds n guest bytes read from gpa: show the bytes planted INT3s hide. */
void gdb_bps_hide(const struct gdb_bps *b, uint64_t gpa, uint8_t *buf, size_t n);
/* n bytes at gpa were just written: they become what the planted INT3s there
 * hide, and the INT3s go back in. */
void gdb_bps_rewrite(struct gdb_bps *b, const struct gmem *m, uint64_t gpa, size_t n);

/* Z1..Z4 (type '1'..'4'): len is ignored for '1'; a watched range is split into
 * naturally aligned pieces of 1, 2, 4 or 8 bytes, one debug register each. 0
 * (also when the same request exists), -1 when the registers do not suffice or
 * the range is empty or wraps. */
int gdb_bps_hw_insert(struct gdb_bps *b, char type, uint64_t addr, uint64_t len);
void gdb_bps_hw_remove(struct gdb_bps *b, char type, uint64_t addr, uint64_t len);
void gdb_bps_hw_clear(struct gdb_bps *b);

/* Is this KVM_EXIT_DEBUG the debugger's? A #BP at a planted breakpoint, a #DB
 * from a debug register in use, or a single-step the debugger asked for
 * (stepping). If so *ev says which. Anything else is the guest's own. */
bool gdb_bps_classify(const struct gdb_bps *b, bool stepping, const struct kvm_debug_exit_arch *a,
		      struct gdb_event *ev);
/* Is a stop recorded earlier still one gdb would expect to hear about? Not a
 * single-step (gdb asks again if it wants one), nor a breakpoint gdb removed since
 * (the vCPU sits on its instruction and simply runs it next). */
bool gdb_bps_still_valid(const struct gdb_bps *b, const struct gdb_event *ev);

#endif
