#include "vmm/bus.h"

#include <stdlib.h>
#include <string.h>

#include "stats/stats.h"
#include "util/log.h"

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
}

void bus_free(struct bus *b)
{
	free(b->ranges);
	b->ranges = NULL;
	b->nr = b->cap = 0;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	if (len == 0 || base + len < base || !ops)
		return -1;
	int pos = 0;
	while (pos < b->nr && b->ranges[pos].base < base)
		pos++;
	/* Neighbours must end before we start and start after we end. */
	if (pos > 0) {
		const struct bus_range *p = &b->ranges[pos - 1];
		if (p->base + p->len > base)
			return -1;
	}
	if (pos < b->nr && b->ranges[pos].base < base + len)
		return -1;
	if (b->nr == b->cap) {
		int cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *n = realloc(b->ranges, (size_t)cap * sizeof(*n));
		if (!n)
			return -1;
		b->ranges = n;
		b->cap = cap;
	}
	memmove(&b->ranges[pos + 1], &b->ranges[pos], (size_t)(b->nr - pos) * sizeof(*b->ranges));
	b->ranges[pos] = (struct bus_range){
		.base = base, .len = len, .ops = ops, .opaque = opaque, .name = name};
	b->nr++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
{
	int lo = 0, hi = b->nr - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, unsigned size, bool is_write)
{
	struct bus_range *r = (struct bus_range *)bus_find(b, addr);
	if (!r || size == 0 || size > 8 || size > r->len || addr - r->base > r->len - size) {
		__atomic_add_fetch(&b->unclaimed, 1, __ATOMIC_RELAXED);
		log_debug("%s: unclaimed %s at 0x%llx size %u", b->name, is_write ? "write" : "read",
			  (unsigned long long)addr, size);
		if (!is_write)
			memset(data, 0xff, size);
		return false;
	}
	__atomic_add_fetch(&r->accesses, 1, __ATOMIC_RELAXED);
	uint64_t t0 = b->timed ? stats_now_ns() : 0;
	if (is_write) {
		if (r->ops->write)
			r->ops->write(r->opaque, addr - r->base, data, size);
	} else {
		if (r->ops->read)
			r->ops->read(r->opaque, addr - r->base, data, size);
		else
			memset(data, 0xff, size);
	}
	if (b->timed) /* several vCPUs may share a device: a locked add */
		__atomic_add_fetch(&r->ns, stats_now_ns() - t0, __ATOMIC_RELAXED);
	return true;
}
