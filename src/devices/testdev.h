/* The test device's ucall protocol, shared by kite and its test guests
 * (freestanding: only fixed-width types). A guest writes the 32-bit guest-physical
 * address of a struct ucall to port 0xf4 with a 4-byte OUT. Enabled only with
 * --test-device. */
#ifndef KITE_TESTDEV_H
#define KITE_TESTDEV_H

#include <stdint.h>

#define UCALL_PORT 0xf4
#define UCALL_MAGIC 0x4c43554bu /* "KUCL" */

enum ucall_cmd {
	UCALL_PRINT = 1, /* print msg on kite's stderr */
	UCALL_ASSERT = 2, /* a guest assertion failed at file:line: kite exits 6 */
	UCALL_DONE = 3,  /* the test passed: kite exits 0 */
	/* kite makes a system call its seccomp filter forbids (getppid): the
	 * test hook of the filter. With seccomp off it returns and says so. */
	UCALL_FORBIDDEN_SYSCALL = 4,
};

struct ucall {
	uint32_t magic;
	uint32_t cmd;
	uint32_t line;
	uint32_t reserved;
	uint64_t args[2];
	char file[64];
	char msg[128];
};

#endif
