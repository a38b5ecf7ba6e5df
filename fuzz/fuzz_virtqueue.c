/* libFuzzer target for the virtqueue core (src/virtio/virtqueue.c).
 *
 * The input is a queue layout followed by a program for a hostile driver and for
 * the device: poke bytes anywhere in guest memory, write descriptors, publish
 * chains, move the available index, then pop, push, copy and ask about
 * notifications. Guest memory has the shape of a guest above 3 GiB shrunk to
 * two 32 KiB regions on either side of the MMIO hole, each its own malloc so
 * ASan sees a step past either end.
 *
 * Besides ASan/UBSan, the target checks what the core promises: every popped
 * buffer is in RAM for its whole length with readable ones first and sane
 * totals; a pop writes nothing but avail_event, a push nothing but one used
 * element and the used index, a chain copy nothing outside the chain's
 * writable buffers; an error breaks the queue for good. A broken promise
 * aborts, which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "virtio/virtqueue.h"
#include "vmm/mem.h"

#define REGION 0x8000u
#define LOW_GPA (LAYOUT_MMIO_HOLE_START - REGION)
#define HIGH_GPA LAYOUT_MMIO_HOLE_END
#define COPY_MAX 4096

/* FUZZ_VQ_TRACE=1 in the environment prints each pop: for checking seeds. */
static bool trace;

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && in->left; i++, in->left--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

/* Fuzzer-friendly guest addresses: mostly near the RAM edges of either region
 * (from 16 KiB below a region to 16 KiB past its end), sometimes anything. */
static uint64_t gpa_of(uint32_t sel)
{
	if (sel >> 31)
		return (uint64_t)sel * 0x9e3779b97f4a7c15ULL; /* anywhere, wide */
	uint64_t base = (sel & 0x10000) ? HIGH_GPA : LOW_GPA;
	return base + (sel & 0xffff) - 0x4000;
}

struct fuzz {
	struct gmem m;
	uint8_t *lo, *hi;
	uint8_t before[2 * REGION]; /* memory before an operation */
	struct vq vq;
	struct vq_config cfg;
	bool configured;
	struct vq_chain c;
	uint16_t avail_idx; /* the fake driver's own */
	uint16_t inflight[VQ_MAX_SIZE];
	uint32_t nr_inflight;
};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_virtqueue: broken promise: %s\n", what);
		abort();
	}
}

static void snapshot(struct fuzz *f)
{
	memcpy(f->before, f->lo, REGION);
	memcpy(f->before + REGION, f->hi, REGION);
}

/* Host byte -> guest address, for reporting which writes were allowed. */
static uint64_t byte_gpa(size_t i)
{
	return i < REGION ? LOW_GPA + i : HIGH_GPA + (i - REGION);
}

struct range {
	uint64_t gpa, len;
};

/* Every byte that changed since snapshot() lies in one of the allowed ranges. */
static void check_writes(struct fuzz *f, const struct range *ok, size_t n, const char *what)
{
	/* Compare in blocks first: most operations change a few bytes at most. */
	enum { BLOCK = 256 };
	for (size_t i = 0; i < 2 * REGION; i++) {
		const uint8_t *now = i < REGION ? f->lo + i : f->hi + (i - REGION);
		if (i % BLOCK == 0 && !memcmp(now, f->before + i, BLOCK)) {
			i += BLOCK - 1;
			continue;
		}
		if (*now == f->before[i])
			continue;
		uint64_t g = byte_gpa(i);
		bool allowed = false;
		for (size_t k = 0; k < n && !allowed; k++)
			allowed = g >= ok[k].gpa && g - ok[k].gpa < ok[k].len;
		check(allowed, what);
	}
}

static void check_chain(struct fuzz *f)
{
	const struct vq_chain *c = &f->c;
	uint64_t r = 0, w = 0;
	check(c->head < f->cfg.size, "head in range");
	check(c->nr >= 1 && c->nr <= f->cfg.size && c->nr <= c->cap, "chain length");
	check(c->nr_readable <= c->nr, "readable count");
	for (uint32_t i = 0; i < c->nr; i++) {
		const struct vq_buf *b = &c->buf[i];
		check(b->len > 0, "no zero-length buffer");
		check(gmem_ptr(&f->m, b->gpa, b->len) == b->hva, "buffer translated whole");
		check(b->writable == (i >= c->nr_readable), "readable before writable");
		if (b->writable)
			w += b->len;
		else
			r += b->len;
	}
	check(r == c->readable_len && w == c->writable_len, "totals");
	check(r + w <= UINT32_MAX, "total below 2^32");
}

static void op_pop(struct fuzz *f, struct input *in)
{
	size_t roff = (size_t)take(in, 2), woff = (size_t)take(in, 2);
	size_t rlen = (size_t)take(in, 2) % (COPY_MAX + 1), wlen = (size_t)take(in, 2) % (COPY_MAX + 1);
	int was_err = f->vq.err;
	uint16_t last = f->vq.last_avail;

	snapshot(f);
	int r = vq_pop(&f->vq, &f->c);
	if (trace)
		fprintf(stderr, "pop: %d (%s) nr=%u r=%u w=%u\n", r, r > 0 ? "chain" : vq_strerror(r),
			f->c.nr, f->c.readable_len, f->c.writable_len);
	struct range ev = {f->cfg.used + 4 + 8ULL * f->cfg.size, 2};
	check_writes(f, &ev, f->configured && f->cfg.event_idx ? 1 : 0, "pop writes only avail_event");
	if (r < 0) {
		check(f->vq.err != 0 && f->c.nr == 0, "error breaks the queue");
		check(f->vq.last_avail == last, "an error consumes nothing");
		if (was_err)
			check(r == VQ_ERR_BROKEN || r == VQ_ERR_CONFIG, "stays broken");
		return;
	}
	check(!was_err, "a broken queue pops nothing");
	if (r == VQ_EMPTY) {
		check(f->c.nr == 0, "empty pop");
		return;
	}
	check(r == VQ_CHAIN, "pop result");
	check(f->vq.last_avail == (uint16_t)(last + 1), "one chain consumed");
	check_chain(f);
	check(f->nr_inflight < VQ_MAX_SIZE, "in flight bounded");
	f->inflight[f->nr_inflight++] = f->c.head;

	static uint8_t buf[COPY_MAX];
	size_t got = vq_chain_read(&f->c, roff, buf, rlen);
	size_t want = roff >= f->c.readable_len ? 0 : f->c.readable_len - roff;
	check(got == (want < rlen ? want : rlen), "read length");

	memset(buf, 0xa5, wlen);
	snapshot(f);
	size_t put = vq_chain_write(&f->c, woff, buf, wlen);
	want = woff >= f->c.writable_len ? 0 : f->c.writable_len - woff;
	check(put == (want < wlen ? want : wlen), "write length");
	static struct range wr[VQ_MAX_SIZE];
	size_t n = 0;
	for (uint32_t i = f->c.nr_readable; i < f->c.nr; i++)
		wr[n++] = (struct range){f->c.buf[i].gpa, f->c.buf[i].len};
	check_writes(f, wr, n, "chain write stays in writable buffers");
}

static void op_push(struct fuzz *f, struct input *in)
{
	uint32_t pick = (uint32_t)take(in, 2), len = (uint32_t)take(in, 4);
	uint16_t used = f->vq.used_idx;
	snapshot(f);
	if (f->nr_inflight == 0) {
		check(vq_push(&f->vq, (uint16_t)pick, len) == VQ_ERR_PUSH, "push with nothing in flight");
		check_writes(f, NULL, 0, "refused push writes nothing");
		return;
	}
	pick %= f->nr_inflight;
	uint16_t head = f->inflight[pick];
	f->inflight[pick] = f->inflight[--f->nr_inflight];
	check(vq_push(&f->vq, head, len) == 0, "push of a popped chain");
	check(f->vq.used_idx == (uint16_t)(used + 1), "used idx advances");
	uint8_t *u = gmem_ptr(&f->m, f->cfg.used, 6 + 8ULL * f->cfg.size);
	uint8_t *e = u + 4 + 8 * (used & (f->cfg.size - 1));
	uint32_t id, l;
	uint16_t idx;
	memcpy(&id, e, 4);
	memcpy(&l, e + 4, 4);
	memcpy(&idx, u + 2, 2);
	check(id == head && l == len && idx == f->vq.used_idx, "used element and index");
	struct range ok[2] = {{f->cfg.used + 2, 2}, {f->cfg.used + 4 + 8ULL * (used & (f->cfg.size - 1)), 8}};
	check_writes(f, ok, 2, "push writes only the used ring");
}

static void put_desc(struct fuzz *f, uint64_t gpa, struct input *in)
{
	uint8_t d[16];
	uint64_t addr = gpa_of((uint32_t)take(in, 4));
	uint32_t len = (uint32_t)take(in, 4);
	uint16_t flags = (uint16_t)take(in, 1), next = (uint16_t)take(in, 2);
	if (take(in, 1) & 1)
		len = 0xffffffffu - (len & 0xff); /* huge lengths are interesting */
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
	gmem_write(&f->m, gpa, d, sizeof(d)); /* silently nothing when not RAM */
}

static void set_avail_idx(struct fuzz *f)
{
	gmem_write(&f->m, f->cfg.avail + 2, &f->avail_idx, 2);
}

static void run(struct fuzz *f, struct input *in)
{
	uint8_t log2 = (uint8_t)take(in, 1), feat = (uint8_t)take(in, 1);
	uint16_t start = (uint16_t)take(in, 2);
	f->cfg = (struct vq_config){
		.size = (uint16_t)(1u << (log2 % 12)),
		.desc = gpa_of((uint32_t)take(in, 4)),
		.avail = gpa_of((uint32_t)take(in, 4)),
		.used = gpa_of((uint32_t)take(in, 4)),
		.event_idx = feat & 1,
		.indirect = feat & 2,
	};
	if (feat & 4) /* sometimes a size that is no power of two */
		f->cfg.size = (uint16_t)take(in, 2);
	f->configured = vq_init(&f->vq, &f->m, &f->cfg) == 0;
	if (vq_chain_alloc(&f->c, (feat & 8) ? 1 + log2 % 4 : (f->cfg.size ? f->cfg.size : 1)) < 0)
		return;
	if (f->configured) {
		vq_set_indices(&f->vq, start, start);
		f->avail_idx = start;
		set_avail_idx(f);
	}

	for (int steps = 0; in->left && steps < 1000; steps++) {
		uint8_t op = (uint8_t)take(in, 1);
		switch ((op & 0x7f) % 9) { /* bit 7: a variant of the operation */
		case 0: { /* poke raw bytes into guest memory */
			uint32_t off = (uint32_t)take(in, 2);
			size_t n = (size_t)take(in, 1);
			uint8_t *region = off < REGION ? f->lo : f->hi;
			off %= REGION;
			if (n > REGION - off)
				n = REGION - off;
			if (n > in->left)
				n = in->left;
			memcpy(region + off, in->p, n);
			in->p += n;
			in->left -= n;
			break;
		}
		case 1: /* a descriptor in the queue's table */
			if (!f->configured)
				break;
			put_desc(f, f->cfg.desc + 16ULL * (take(in, 2) & (f->cfg.size - 1u)), in);
			break;
		case 2: /* a descriptor anywhere: indirect tables */
			put_desc(f, gpa_of((uint32_t)take(in, 4)) & ~15ULL, in);
			break;
		case 3: { /* publish a chain */
			uint16_t head = (uint16_t)take(in, 2);
			if (!f->configured)
				break;
			if (!(op & 0x80))
				head %= f->cfg.size; /* mostly valid heads */
			gmem_write(&f->m, f->cfg.avail + 4 + 2ULL * (f->avail_idx & (f->cfg.size - 1u)), &head, 2);
			f->avail_idx++;
			set_avail_idx(f);
			break;
		}
		case 4: /* move the avail index anywhere */
			f->avail_idx = (uint16_t)(f->avail_idx + take(in, 2));
			if (f->configured)
				set_avail_idx(f);
			break;
		case 5:
			op_pop(f, in);
			break;
		case 6:
			op_push(f, in);
			break;
		case 7: { /* driver's used_event / flags, then the device's decision */
			uint16_t v = (uint16_t)take(in, 2);
			if (f->configured)
				gmem_write(&f->m, f->cfg.avail + ((op & 0x80) ? 4 + 2ULL * f->cfg.size : 0), &v, 2);
			snapshot(f);
			(void)vq_should_notify(&f->vq);
			check_writes(f, NULL, 0, "should_notify writes nothing");
			break;
		}
		case 8: { /* device reset, then the same queue from other indices */
			uint16_t a = (uint16_t)take(in, 2), u = (uint16_t)take(in, 2);
			vq_reset(&f->vq);
			f->nr_inflight = 0;
			f->configured = vq_init(&f->vq, &f->m, &f->cfg) == 0;
			if (f->configured) {
				vq_set_indices(&f->vq, a, u);
				f->avail_idx = a;
				set_avail_idx(f);
			}
			break;
		}
		}
	}
	vq_chain_free(&f->c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz f;
	static bool once;
	if (!once) {
		once = true;
		trace = getenv("FUZZ_VQ_TRACE") != NULL;
	}
	memset(&f, 0, sizeof(f));
	f.lo = calloc(1, REGION);
	f.hi = calloc(1, REGION);
	if (!f.lo || !f.hi)
		abort();
	/* Two RAM regions around the MMIO hole, as gmem_init lays out a guest of
	 * more than 3 GiB, but small and each in its own allocation. */
	f.m.region[0] = (struct gmem_region){.gpa = LOW_GPA, .size = REGION, .hva = f.lo};
	f.m.region[1] = (struct gmem_region){.gpa = HIGH_GPA, .size = REGION, .hva = f.hi};
	f.m.nr_regions = 2;
	f.m.ram_size = 2 * REGION;

	struct input in = {data, size};
	run(&f, &in);
	free(f.lo);
	free(f.hi);
	return 0;
}
