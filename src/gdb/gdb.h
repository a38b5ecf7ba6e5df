/* A GDB remote-protocol stub for the whole VM (`kite run --gdb tcp:HOST:PORT` or
 * `--gdb unix:PATH`).
 *
 * Each vCPU is a gdb thread (thread id = vCPU index + 1). The stub is all-stop:
 * when one vCPU stops (breakpoint, watchpoint, single-step, Ctrl-C) every vCPU is
 * parked outside KVM_RUN until gdb resumes them. Like Firecracker's gdb support,
 * the guest does not run before a debugger has connected and continued: the vCPUs
 * are created parked. A debugger that detaches (or whose connection drops) leaves
 * the guest running with every breakpoint removed; the next one to connect stops
 * it again. One debugger at a time; a second connection is refused. */
#ifndef KITE_GDB_H
#define KITE_GDB_H

#include <stdbool.h>
#include <stddef.h>

#include "util/log.h"

struct vm;
struct vcpu;

/* Checks the form of a --gdb address: tcp:HOST:PORT ([v6] hosts in brackets,
 * port 0 picks a free one) or unix:PATH. 0, or -1 with a message in msg. */
int gdb_addr_check(const char *addr, char *msg, size_t msg_len);

/* Listens on addr and parks the vCPUs before they first run; call after
 * vcpus_create and before vcpus_start. Sets vm->gdb. Errors: KITE_EXIT_ERROR. */
int gdb_stub_start(struct vm *vm, const char *addr, struct kite_err *err);
/* After the vCPU threads are stopped: tells a debugger waiting on a running guest
 * that it exited (W packet), closes the connection and frees the stub. */
void gdb_stub_stop(struct vm *vm);

/* KVM_EXIT_DEBUG on vCPU v, from its own thread. Either the debugger's event
 * (the VM is then asked to pause, and the vCPU parks when this returns) or a #BP
 * or #DB of the guest's own, which is reinjected into the guest. Returns true: the
 * vCPU loop goes on. */
bool gdb_debug_exit(struct vcpu *v);

#endif
