/* The device registry: PIO and MMIO address ranges claimed by devices.
 *
 * A device claims [base, base+len) on a bus with an ops table; the vCPU loop hands
 * every access to bus_dispatch() and never knows device types. Ranges may not
 * overlap. Registration happens before vCPUs run; lookups are lock-free binary
 * searches over a sorted array. Devices lock their own state. */
#ifndef KITE_BUS_H
#define KITE_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct bus_ops {
	/* offset is relative to the range base; size is 1, 2, 4 or 8 */
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, unsigned size);
	void (*write)(void *opaque, uint64_t offset, const uint8_t *data, unsigned size);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
	uint64_t accesses; /* trap accounting: exits that landed here */
	uint64_t ns;       /* and the time the device spent on them */
};

struct bus {
	const char *name; /* "pio" or "mmio" */
	struct bus_range *ranges;
	int nr, cap;
	uint64_t unclaimed; /* accesses that hit no device */
	bool timed;         /* time each access (trap accounting) */
};

void bus_init(struct bus *b, const char *name);
void bus_free(struct bus *b);
/* 0, or -1 when the range is empty, wraps, or overlaps a claimed one. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name);
const struct bus_range *bus_find(const struct bus *b, uint64_t addr);
/* Routes one access. Reads that hit nothing return all-ones, writes are dropped:
 * what real hardware does for an unclaimed address. Returns false then. */
bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, unsigned size, bool is_write);

#endif
