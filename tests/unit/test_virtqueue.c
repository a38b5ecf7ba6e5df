/* The virtqueue core against a fake driver: the test writes descriptors and the
 * available ring into a malloc'd guest memory the way a (sometimes hostile)
 * driver would, then checks what vq_pop() accepts, refuses, and writes back. */
#include "unit.h"

#include "arch/x86/layout.h"
#include "virtio/virtqueue.h"
#include "vmm/mem.h"

#define RAM MiB(2)
#define QSIZE 8
#define DESC 0x1000ULL
#define AVAIL 0x2000ULL
#define USED 0x3000ULL
#define TABLE 0x8000ULL /* indirect tables */
#define DATA 0x10000ULL /* buffers */

struct drv {
	struct gmem m;
	uint8_t *ram; /* NULL for the big, mmap-backed memories */
	struct vq vq;
	struct vq_config cfg;
	struct vq_chain c;
	uint16_t avail_idx; /* the driver's own copy */
};

static uint8_t *gp(struct drv *d, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&d->m, gpa, len);
	assert_non_null(p);
	return p;
}

static void drv_config(struct drv *d, uint16_t size, bool event_idx, bool indirect)
{
	d->cfg = (struct vq_config){.size = size, .desc = DESC, .avail = AVAIL, .used = USED,
				    .event_idx = event_idx, .indirect = indirect};
}

/* (Re)starts the queue at index `start` for both the driver and the device. */
static void drv_start(struct drv *d, uint16_t start)
{
	assert_int_equal(vq_init(&d->vq, &d->m, &d->cfg), 0);
	vq_set_indices(&d->vq, start, start);
	d->avail_idx = start;
	set16(gp(d, d->cfg.avail + 2, 2), start);
	set16(gp(d, d->cfg.used + 2, 2), start);
	vq_chain_free(&d->c);
	assert_int_equal(vq_chain_alloc(&d->c, d->cfg.size), 0);
}

static int setup_mem(void **state, uint64_t size, bool malloced)
{
	struct drv *d = calloc(1, sizeof(*d));
	if (!d)
		return -1;
	if (malloced) {
		d->ram = calloc(1, size);
		if (!d->ram) {
			free(d);
			return -1;
		}
	}
	if (gmem_init(&d->m, size, d->ram) < 0) {
		free(d->ram);
		free(d);
		return -1;
	}
	drv_config(d, QSIZE, false, true);
	*state = d;
	return 0;
}

static int setup(void **state)
{
	return setup_mem(state, RAM, true);
}

/* 5 GiB of MAP_NORESERVE: RAM [0, 3 GiB) and [4 GiB, 6 GiB); only touched pages
 * become real. */
static int setup_hole(void **state)
{
	return setup_mem(state, GiB(5), false);
}

/* 8 GiB: the high region [4 GiB, 9 GiB) holds a single 0xFFFFFFFF-byte buffer. */
static int setup_huge(void **state)
{
	return setup_mem(state, GiB(8), false);
}

static int teardown(void **state)
{
	struct drv *d = *state;
	vq_chain_free(&d->c);
	gmem_free(&d->m);
	free(d->ram);
	free(d);
	return 0;
}

static void put_desc(struct drv *d, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *p = gp(d, table + 16ULL * i, 16);
	set64(p, addr);
	set32(p + 8, len);
	set16(p + 12, flags);
	set16(p + 14, next);
}

static void desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	put_desc(d, d->cfg.desc, i, addr, len, flags, next);
}

/* Makes one more chain available: ring entry, then the index. */
static void avail_add(struct drv *d, uint16_t head)
{
	set16(gp(d, d->cfg.avail + 4 + 2 * (d->avail_idx % d->cfg.size), 2), head);
	d->avail_idx++;
	set16(gp(d, d->cfg.avail + 2, 2), d->avail_idx);
}

static void set_avail_idx(struct drv *d, uint16_t idx)
{
	set16(gp(d, d->cfg.avail + 2, 2), idx);
}

static uint16_t used_idx(struct drv *d)
{
	return le16(gp(d, d->cfg.used + 2, 2));
}

static uint32_t used_id(struct drv *d, uint16_t slot)
{
	return le32(gp(d, d->cfg.used + 4 + 8 * (slot % d->cfg.size), 4));
}

static uint32_t used_len(struct drv *d, uint16_t slot)
{
	return le32(gp(d, d->cfg.used + 8 + 8 * (slot % d->cfg.size), 4));
}

static void set_used_event(struct drv *d, uint16_t v)
{
	set16(gp(d, d->cfg.avail + 4 + 2 * d->cfg.size, 2), v);
}

static uint16_t avail_event(struct drv *d)
{
	return le16(gp(d, d->cfg.used + 4 + 8 * d->cfg.size, 2));
}

static int pop(struct drv *d)
{
	return vq_pop(&d->vq, &d->c);
}

/* The chain at head 0 is refused with err, and the queue stays broken. */
static void expect_broken(struct drv *d, uint16_t head, int err)
{
	avail_add(d, head);
	assert_int_equal(pop(d), err);
	assert_int_equal(d->c.nr, 0);
	assert_int_equal(d->vq.err, err);
	assert_string_not_equal(vq_strerror(err), "unknown virtqueue error");
	assert_int_equal(pop(d), VQ_ERR_BROKEN);
	assert_int_equal(d->vq.err, err); /* the root cause is kept */
}

/* ---- configuration ---- */

static void init_checks_config(void **state)
{
	struct drv *d = *state;
	struct vq *vq = &d->vq;
	struct vq_config ok = {.size = QSIZE, .desc = DESC, .avail = AVAIL, .used = USED};
	struct vq_config c;

	assert_int_equal(vq_init(vq, &d->m, &ok), 0);
	for (unsigned s = 1; s <= VQ_MAX_SIZE; s <<= 1) {
		c = ok;
		c.size = (uint16_t)s;
		c.desc = 0x100000; /* room for 16 * 32768 bytes */
		c.avail = 0x80000;
		c.used = 0x180000;
		assert_int_equal(vq_init(vq, &d->m, &c), 0);
	}
	uint16_t bad_sizes[] = {0, 3, 6, 100, 32767, 32769, 49152, 65535};
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		c = ok;
		c.size = bad_sizes[i];
		assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	}
	/* alignment: desc 16, avail 2, used 4 */
	c = ok; c.desc = DESC + 8;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.avail = AVAIL + 1;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.used = USED + 2;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.avail = AVAIL + 2; c.used = USED + 4; /* minimum alignments are fine */
	assert_int_equal(vq_init(vq, &d->m, &c), 0);
	/* each ring's whole extent, event fields included, must be RAM */
	c = ok; c.desc = RAM - 16 * QSIZE;
	assert_int_equal(vq_init(vq, &d->m, &c), 0);
	c = ok; c.desc = RAM - 16 * QSIZE + 16;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.avail = RAM - (6 + 2 * QSIZE);
	assert_int_equal(vq_init(vq, &d->m, &c), 0);
	c = ok; c.avail = RAM - (4 + 2 * QSIZE); /* used_event would be past the end */
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.used = RAM - (6 + 8 * QSIZE) - 2; /* 4-aligned, fits */
	assert_int_equal(vq_init(vq, &d->m, &c), 0);
	c = ok; c.used = RAM - (4 + 8 * QSIZE); /* avail_event past the end */
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.used = UINT64_MAX - 3;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.desc = UINT64_MAX & ~15ULL;
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
	c = ok; c.size = VQ_MAX_SIZE; c.used = RAM - 0x1000; /* a 256 KiB used ring */
	assert_int_equal(vq_init(vq, &d->m, &c), VQ_ERR_CONFIG);
}

static void unconfigured_queue_refuses(void **state)
{
	struct drv *d = *state;
	struct vq_config bad = {.size = 3};
	assert_int_equal(vq_init(&d->vq, &d->m, &bad), VQ_ERR_CONFIG);
	assert_int_equal(vq_chain_alloc(&d->c, 4), 0);
	assert_int_equal(pop(d), VQ_ERR_CONFIG);
	assert_int_equal(vq_push(&d->vq, 0, 0), VQ_ERR_PUSH);
	assert_false(vq_should_notify(&d->vq));
	vq_reset(&d->vq);
	assert_int_equal(pop(d), VQ_ERR_CONFIG);
	assert_int_equal(vq_push(&d->vq, 0, 0), VQ_ERR_PUSH);
	/* a reset queue can be configured again */
	drv_start(d, 0);
	assert_int_equal(pop(d), VQ_EMPTY);
}

/* ---- well-formed chains ---- */

static void empty_queue(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(d->vq.err, 0);
}

static void simple_chain_and_used_ring(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	memcpy(gp(d, DATA, 4), "abcd", 4);
	memcpy(gp(d, DATA + 0x100, 3), "efg", 3);
	desc(d, 5, DATA, 4, VQ_DESC_F_NEXT, 2);
	desc(d, 2, DATA + 0x100, 3, VQ_DESC_F_NEXT, 7);
	desc(d, 7, DATA + 0x200, 16, VQ_DESC_F_WRITE, 0);
	avail_add(d, 5);

	assert_int_equal(pop(d), VQ_CHAIN);
	struct vq_chain *c = &d->c;
	assert_int_equal(c->head, 5);
	assert_int_equal(c->nr, 3);
	assert_int_equal(c->nr_readable, 2);
	assert_int_equal(c->readable_len, 7);
	assert_int_equal(c->writable_len, 16);
	assert_int_equal(c->buf[0].gpa, DATA);
	assert_ptr_equal(c->buf[0].hva, d->ram + DATA);
	assert_int_equal(c->buf[1].len, 3);
	assert_false(c->buf[1].writable);
	assert_true(c->buf[2].writable);
	assert_ptr_equal(c->buf[2].hva, d->ram + DATA + 0x200);

	char in[8] = {0};
	assert_int_equal(vq_chain_read(c, 0, in, sizeof(in)), 7);
	assert_memory_equal(in, "abcdefg", 7);
	assert_int_equal(vq_chain_write(c, 0, "OK", 2), 2);
	assert_memory_equal(d->ram + DATA + 0x200, "OK", 2);

	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(vq_push(&d->vq, c->head, 2), 0);
	assert_int_equal(used_idx(d), 1);
	assert_int_equal(used_id(d, 0), 5);
	assert_int_equal(used_len(d, 0), 2);
	/* nothing in flight any more */
	assert_int_equal(vq_push(&d->vq, 5, 0), VQ_ERR_PUSH);
	assert_int_equal(used_idx(d), 1);
}

static void several_chains_pushed_out_of_order(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	for (uint16_t i = 0; i < 3; i++) {
		desc(d, i, DATA + 0x100 * i, 8, VQ_DESC_F_WRITE, 0);
		avail_add(d, i);
	}
	uint16_t heads[3];
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pop(d), VQ_CHAIN);
		heads[i] = d->c.head;
		assert_int_equal(heads[i], i);
		assert_int_equal(d->c.nr_readable, 0);
		assert_int_equal(d->c.writable_len, 8);
	}
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(vq_push(&d->vq, heads[2], 1), 0);
	assert_int_equal(vq_push(&d->vq, heads[0], 2), 0);
	assert_int_equal(vq_push(&d->vq, heads[1], 3), 0);
	assert_int_equal(used_idx(d), 3);
	assert_int_equal(used_id(d, 0), 2);
	assert_int_equal(used_len(d, 0), 1);
	assert_int_equal(used_id(d, 1), 0);
	assert_int_equal(used_len(d, 1), 2);
	assert_int_equal(used_id(d, 2), 1);
	assert_int_equal(used_len(d, 2), 3);
	assert_int_equal(vq_push(&d->vq, 0, 0), VQ_ERR_PUSH);
	assert_int_equal(vq_push(&d->vq, QSIZE, 0), VQ_ERR_PUSH);
}

/* The 16-bit indices wrap at 65536 while ring slots wrap at the queue size. */
static void indices_wrap_around(void **state)
{
	struct drv *d = *state;
	drv_start(d, 65533);
	for (uint16_t i = 0; i < QSIZE; i++)
		desc(d, i, DATA + 0x10 * i, 4, 0, 0);
	uint16_t expect_used = 65533;
	for (int round = 0; round < 4; round++) {
		/* a full queue's worth at once, then drain it */
		for (uint16_t i = 0; i < QSIZE; i++)
			avail_add(d, (uint16_t)((i + round) % QSIZE));
		for (uint16_t i = 0; i < QSIZE; i++) {
			assert_int_equal(pop(d), VQ_CHAIN);
			assert_int_equal(d->c.head, (i + round) % QSIZE);
			assert_int_equal(vq_push(&d->vq, d->c.head, i), 0);
			assert_int_equal(used_id(d, expect_used), (i + round) % QSIZE);
			assert_int_equal(used_len(d, expect_used), i);
			expect_used++;
			assert_int_equal(used_idx(d), expect_used);
		}
		assert_int_equal(pop(d), VQ_EMPTY);
	}
	assert_int_equal(used_idx(d), (uint16_t)(65533 + 4 * QSIZE));
	assert_int_equal(d->vq.last_avail, (uint16_t)(65533 + 4 * QSIZE));
}

static void chain_as_long_as_the_queue(void **state)
{
	struct drv *d = *state;
	d->cfg.size = VQ_MAX_SIZE;
	d->cfg.desc = 0x100000;
	d->cfg.avail = 0x80000;
	d->cfg.used = 0x180000;
	drv_start(d, 0);
	/* a chain through every descriptor: accepted */
	for (uint32_t i = 0; i < VQ_MAX_SIZE; i++)
		desc(d, (uint16_t)i, DATA, 1, i + 1 < VQ_MAX_SIZE ? VQ_DESC_F_NEXT : 0,
		     (uint16_t)(i + 1));
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.nr, VQ_MAX_SIZE);
	assert_int_equal(d->c.readable_len, VQ_MAX_SIZE);
	/* the same, closed into a ring: refused by the bound, not looped over */
	desc(d, VQ_MAX_SIZE - 1, DATA, 1, VQ_DESC_F_NEXT, 0);
	expect_broken(d, 0, VQ_ERR_TOO_LONG);
}

/* ---- malformed available ring ---- */

static void avail_idx_too_far_ahead(void **state)
{
	struct drv *d = *state;
	for (uint16_t i = 0; i < QSIZE; i++)
		desc(d, i, DATA, 4, 0, 0);

	/* exactly a queue's worth ahead is fine */
	drv_start(d, 65530);
	set_avail_idx(d, (uint16_t)(65530 + QSIZE));
	for (int i = 0; i < QSIZE; i++)
		assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_EMPTY);

	/* one more is not, and nothing is popped */
	drv_start(d, 65530);
	set_avail_idx(d, (uint16_t)(65530 + QSIZE + 1));
	assert_int_equal(pop(d), VQ_ERR_AVAIL_IDX);
	assert_int_equal(d->vq.last_avail, 65530);
	assert_int_equal(pop(d), VQ_ERR_BROKEN);

	/* nor is a huge jump, or an index moved backwards (a jump of 65535) */
	uint16_t bad[] = {40000, 65529, 65530 - QSIZE};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_start(d, 65530);
		set_avail_idx(d, bad[i]);
		assert_int_equal(pop(d), VQ_ERR_AVAIL_IDX);
	}

	/* moved backwards after the device consumed some */
	drv_start(d, 10);
	avail_add(d, 0);
	avail_add(d, 1);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_CHAIN);
	set_avail_idx(d, 11);
	assert_int_equal(pop(d), VQ_ERR_AVAIL_IDX);
}

/* A driver cannot have more chains outstanding than descriptors: republishing
 * heads the device still holds must not grow the device's work without bound. */
static void more_outstanding_than_the_queue(void **state)
{
	struct drv *d = *state;
	drv_start(d, 65534);
	for (uint16_t i = 0; i < QSIZE; i++) {
		desc(d, i, DATA, 4, 0, 0);
		avail_add(d, i);
	}
	for (int i = 0; i < QSIZE - 1; i++)
		assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(vq_push(&d->vq, 0, 0), 0); /* one back */
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_CHAIN); /* QSIZE in flight now */
	assert_int_equal(pop(d), VQ_EMPTY);
	avail_add(d, 1);                    /* head 1 is still in flight */
	assert_int_equal(pop(d), VQ_ERR_AVAIL_IDX);
	assert_int_equal(pop(d), VQ_ERR_BROKEN);
	/* in-flight chains can still be completed on a broken queue */
	assert_int_equal(vq_push(&d->vq, 1, 0), 0);
}

static void head_out_of_range(void **state)
{
	struct drv *d = *state;
	uint16_t bad[] = {QSIZE, QSIZE + 1, 0x8000, 0xffff};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_start(d, 0);
		expect_broken(d, bad[i], VQ_ERR_HEAD);
	}
}

/* ---- malformed descriptor chains ---- */

static void next_out_of_range(void **state)
{
	struct drv *d = *state;
	uint16_t bad[] = {QSIZE, 0x100, 0xffff};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_start(d, 0);
		desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
		desc(d, 1, DATA, 4, VQ_DESC_F_NEXT, bad[i]);
		expect_broken(d, 0, VQ_ERR_NEXT);
	}
	/* without NEXT, next is ignored */
	drv_start(d, 0);
	desc(d, 0, DATA, 4, 0, 0xffff);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
}

static void descriptor_loops(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0); /* onto itself */
	desc(d, 3, DATA, 4, VQ_DESC_F_NEXT, 3);
	expect_broken(d, 3, VQ_ERR_TOO_LONG);

	drv_start(d, 0); /* 0 -> 1 -> 2 -> 1 */
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	desc(d, 1, DATA, 4, VQ_DESC_F_NEXT, 2);
	desc(d, 2, DATA, 4, VQ_DESC_F_NEXT, 1);
	expect_broken(d, 0, VQ_ERR_TOO_LONG);

	drv_start(d, 0); /* a loop of writable buffers */
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 1);
	desc(d, 1, DATA, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_TOO_LONG);
}

static void buffers_outside_ram(void **state)
{
	struct drv *d = *state;
	struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{RAM, 1},                   /* just past the end */
		{RAM - 8, 16},              /* spans the end */
		{RAM - 1, 0xffffffff},      /* huge */
		{DATA, 0xffffffff},         /* starts in RAM, far too long */
		{UINT64_MAX - 4, 16},       /* would wrap around */
		{UINT64_MAX, 1},
		{LAYOUT_MMIO_HOLE_START, 4},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_start(d, 0);
		desc(d, 0, bad[i].addr, bad[i].len, VQ_DESC_F_WRITE, 0);
		expect_broken(d, 0, VQ_ERR_ADDR);
	}
	/* later in a chain too */
	drv_start(d, 0);
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	desc(d, 1, RAM - 8, 16, VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_ADDR);
	/* ending exactly at the end of RAM is fine */
	drv_start(d, 0);
	desc(d, 0, RAM - 16, 16, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_ptr_equal(d->c.buf[0].hva, d->ram + RAM - 16);
}

static void buffers_around_the_mmio_hole(void **state)
{
	struct drv *d = *state;
	const uint64_t hole = LAYOUT_MMIO_HOLE_START, high = LAYOUT_MMIO_HOLE_END;
	assert_int_equal(d->m.nr_regions, 2);
	struct {
		uint64_t addr;
		uint32_t len;
		int want;
	} cases[] = {
		{hole - 4096, 4096, VQ_CHAIN},   /* ends where the hole starts */
		{high, 4096, VQ_CHAIN},          /* starts where RAM resumes */
		{hole - 8, 16, VQ_ERR_ADDR},     /* runs into the hole */
		{hole, 1, VQ_ERR_ADDR},          /* in the hole */
		{high - 8, 16, VQ_ERR_ADDR},     /* ends past the hole in RAM */
		{hole - 8, 0x40000010, VQ_ERR_ADDR}, /* spans the hole: both ends are RAM */
		{GiB(6) - 8, 16, VQ_ERR_ADDR},   /* past the end of high RAM */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		drv_start(d, 0);
		desc(d, 0, cases[i].addr, cases[i].len, VQ_DESC_F_WRITE, 0);
		if (cases[i].want == VQ_CHAIN) {
			avail_add(d, 0);
			assert_int_equal(pop(d), VQ_CHAIN);
			assert_int_equal(d->c.buf[0].gpa, cases[i].addr);
			assert_ptr_equal(d->c.buf[0].hva, gmem_ptr(&d->m, cases[i].addr, cases[i].len));
		} else {
			expect_broken(d, 0, cases[i].want);
		}
	}
	/* rings in the hole or across it are refused at setup */
	struct vq_config c = d->cfg;
	c.desc = hole + 0x1000;
	assert_int_equal(vq_init(&d->vq, &d->m, &c), VQ_ERR_CONFIG);
	c = d->cfg;
	c.used = hole - 0x10;
	assert_int_equal(vq_init(&d->vq, &d->m, &c), VQ_ERR_CONFIG);
	c = d->cfg;
	c.avail = high;
	assert_int_equal(vq_init(&d->vq, &d->m, &c), 0);
}

/* Zero-length buffers are refused, wherever they are. */
static void zero_length_refused(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	desc(d, 0, DATA, 0, 0, 0);
	expect_broken(d, 0, VQ_ERR_ZERO_LEN);

	drv_start(d, 0);
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	desc(d, 1, DATA, 0, VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_ZERO_LEN);

	drv_start(d, 0);
	desc(d, 0, TABLE, 32, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	put_desc(d, TABLE, 1, DATA, 0, VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_ZERO_LEN);
}

static void readable_after_writable(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	desc(d, 1, DATA, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 2);
	desc(d, 2, DATA, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_ORDER);

	/* across a direct descriptor and the indirect table it leads to */
	drv_start(d, 0);
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 1);
	desc(d, 1, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_ORDER);

	/* inside an indirect table */
	drv_start(d, 0);
	desc(d, 0, TABLE, 32, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 1);
	put_desc(d, TABLE, 1, DATA, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_ORDER);
}

static void chain_longer_than_caller_accepts(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	vq_chain_free(&d->c);
	assert_int_equal(vq_chain_alloc(&d->c, 2), 0);
	desc(d, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	desc(d, 1, DATA, 4, 0, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	desc(d, 1, DATA, 4, VQ_DESC_F_NEXT, 2);
	desc(d, 2, DATA, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_CHAIN_CAP);
}

/* ---- lengths: huge buffers and the 2^32 - 1 total ---- */

static void huge_lengths(void **state)
{
	struct drv *d = *state;
	const uint64_t high = LAYOUT_MMIO_HOLE_END;
	/* one 0xFFFFFFFF-byte buffer entirely in RAM: fine (never touched) */
	drv_start(d, 0);
	desc(d, 0, high, 0xffffffff, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.writable_len, 0xffffffffu);
	assert_int_equal(vq_push(&d->vq, 0, 0xffffffffu), 0);
	assert_int_equal(used_len(d, 0), 0xffffffffu);

	/* one more byte makes 2^32: refused */
	drv_start(d, 0);
	desc(d, 0, DATA, 1, VQ_DESC_F_NEXT, 1);
	desc(d, 1, high, 0xffffffff, VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_TOTAL_LEN);

	/* lengths that wrap a 32-bit sum: 3 x 2 GiB */
	drv_start(d, 0);
	desc(d, 0, high, 0x80000000, VQ_DESC_F_NEXT, 1);
	desc(d, 1, high, 0x80000000, VQ_DESC_F_NEXT, 2);
	desc(d, 2, high, 0x80000000, 0, 0);
	expect_broken(d, 0, VQ_ERR_TOTAL_LEN);

	/* and 0x80000001 + 0x7fffffff is exactly 2^32 */
	drv_start(d, 0);
	desc(d, 0, high, 0x80000001, VQ_DESC_F_NEXT, 1);
	desc(d, 1, high, 0x7fffffff, VQ_DESC_F_WRITE, 0);
	expect_broken(d, 0, VQ_ERR_TOTAL_LEN);

	/* 0x80000000 + 0x7fffffff = 2^32 - 1: accepted */
	drv_start(d, 0);
	desc(d, 0, high, 0x80000000, VQ_DESC_F_NEXT, 1);
	desc(d, 1, high, 0x7fffffff, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.readable_len, 0x80000000u);
	assert_int_equal(d->c.writable_len, 0x7fffffffu);
}

/* ---- indirect tables ---- */

static void indirect_table(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	/* WRITE on the descriptor naming the table is ignored; NEXT inside the
	 * table indexes the table, in any order */
	desc(d, 4, TABLE, 3 * 16, VQ_DESC_F_INDIRECT | VQ_DESC_F_WRITE, 0);
	put_desc(d, TABLE, 0, DATA, 10, VQ_DESC_F_NEXT, 2);
	put_desc(d, TABLE, 2, DATA + 0x100, 20, VQ_DESC_F_NEXT, 1);
	put_desc(d, TABLE, 1, DATA + 0x200, 30, VQ_DESC_F_WRITE, 7 /* ignored */);
	avail_add(d, 4);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.head, 4);
	assert_int_equal(d->c.nr, 3);
	assert_int_equal(d->c.nr_readable, 2);
	assert_int_equal(d->c.buf[0].gpa, DATA);
	assert_int_equal(d->c.buf[1].gpa, DATA + 0x100);
	assert_int_equal(d->c.buf[2].gpa, DATA + 0x200);
	assert_int_equal(d->c.readable_len, 30);
	assert_int_equal(d->c.writable_len, 30);
	assert_int_equal(vq_push(&d->vq, 4, 30), 0);
	assert_int_equal(used_id(d, 0), 4);

	/* direct descriptors, then one naming a table (virtio 1.x allows it) */
	desc(d, 0, DATA + 0x300, 8, VQ_DESC_F_NEXT, 1);
	desc(d, 1, TABLE + 0x100, 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE + 0x100, 0, DATA + 0x400, 4, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.nr, 2);
	assert_int_equal(d->c.nr_readable, 1);
	assert_int_equal(d->c.buf[1].gpa, DATA + 0x400);

	/* a table of exactly queue-size entries, unaligned in guest memory */
	for (uint16_t i = 0; i < QSIZE; i++)
		put_desc(d, TABLE + 0x208, i, DATA, 1, i + 1 < QSIZE ? VQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	desc(d, 2, TABLE + 0x208, 16 * QSIZE, VQ_DESC_F_INDIRECT, 0);
	avail_add(d, 2);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.nr, QSIZE);
}

static void indirect_malformed(void **state)
{
	struct drv *d = *state;
	put_desc(d, TABLE, 0, DATA, 4, 0, 0);
	struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
		int want;
	} cases[] = {
		{TABLE, 0, VQ_DESC_F_INDIRECT, VQ_ERR_INDIRECT},
		{TABLE, 8, VQ_DESC_F_INDIRECT, VQ_ERR_INDIRECT},
		{TABLE, 24, VQ_DESC_F_INDIRECT, VQ_ERR_INDIRECT},
		{TABLE, 16 * (QSIZE + 1), VQ_DESC_F_INDIRECT, VQ_ERR_INDIRECT},
		{TABLE, 0xfffffff0, VQ_DESC_F_INDIRECT, VQ_ERR_INDIRECT},
		{TABLE, 16, VQ_DESC_F_INDIRECT | VQ_DESC_F_NEXT, VQ_ERR_INDIRECT},
		{RAM - 8, 16, VQ_DESC_F_INDIRECT, VQ_ERR_ADDR},
		{RAM, 16, VQ_DESC_F_INDIRECT, VQ_ERR_ADDR},
		{UINT64_MAX - 15, 16, VQ_DESC_F_INDIRECT, VQ_ERR_ADDR},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		drv_start(d, 0);
		desc(d, 0, cases[i].addr, cases[i].len, cases[i].flags, 1);
		desc(d, 1, DATA, 4, 0, 0);
		expect_broken(d, 0, cases[i].want);
	}

	/* not negotiated */
	d->cfg.indirect = false;
	drv_start(d, 0);
	desc(d, 0, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	expect_broken(d, 0, VQ_ERR_INDIRECT);
	d->cfg.indirect = true;

	/* nested */
	drv_start(d, 0);
	desc(d, 0, TABLE, 32, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	put_desc(d, TABLE, 1, TABLE + 0x100, 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE + 0x100, 0, DATA, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_NESTED);

	/* a table naming itself */
	drv_start(d, 0);
	desc(d, 0, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	expect_broken(d, 0, VQ_ERR_NESTED);

	/* next past the table, though inside the queue size */
	drv_start(d, 0);
	desc(d, 0, TABLE, 32, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT, 2);
	expect_broken(d, 0, VQ_ERR_NEXT);

	/* a buffer in the table outside RAM */
	drv_start(d, 0);
	desc(d, 0, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, RAM - 2, 4, 0, 0);
	expect_broken(d, 0, VQ_ERR_ADDR);
}

static void indirect_loops_and_length(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0); /* 0 -> 1 -> 0 inside the table */
	desc(d, 0, TABLE, 2 * 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT, 1);
	put_desc(d, TABLE, 1, DATA, 4, VQ_DESC_F_NEXT, 0);
	expect_broken(d, 0, VQ_ERR_TOO_LONG);

	drv_start(d, 0); /* onto itself, in a full-size table */
	desc(d, 0, TABLE, QSIZE * 16, VQ_DESC_F_INDIRECT, 0);
	put_desc(d, TABLE, 0, DATA, 4, VQ_DESC_F_NEXT, 0);
	expect_broken(d, 0, VQ_ERR_TOO_LONG);

	/* direct + indirect buffers together longer than the queue */
	drv_start(d, 0);
	for (uint16_t i = 0; i < 4; i++)
		desc(d, i, DATA, 4, VQ_DESC_F_NEXT, (uint16_t)(i + 1));
	desc(d, 4, TABLE, QSIZE * 16, VQ_DESC_F_INDIRECT, 0);
	for (uint16_t i = 0; i < QSIZE; i++)
		put_desc(d, TABLE, i, DATA, 4, i + 1 < QSIZE ? VQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	expect_broken(d, 0, VQ_ERR_TOO_LONG);
}

/* ---- notifications ---- */

static void notify_without_event_idx(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	desc(d, 0, DATA, 4, 0, 0);
	assert_false(vq_should_notify(&d->vq)); /* nothing pushed */
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(vq_push(&d->vq, 0, 0), 0);
	assert_true(vq_should_notify(&d->vq));
	assert_false(vq_should_notify(&d->vq)); /* nothing new */

	set16(gp(d, AVAIL, 2), VQ_AVAIL_F_NO_INTERRUPT);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(vq_push(&d->vq, 0, 0), 0);
	assert_false(vq_should_notify(&d->vq));
	/* without EVENT_IDX, avail_event is left alone */
	assert_int_equal(avail_event(d), 0);
}

/* Pushes n chains (popping them first) and asks whether to notify. */
static bool push_n(struct drv *d, int n)
{
	for (int i = 0; i < n; i++) {
		avail_add(d, 0);
		assert_int_equal(pop(d), VQ_CHAIN);
		assert_int_equal(vq_push(&d->vq, 0, 0), 0);
	}
	return vq_should_notify(&d->vq);
}

static void notify_with_event_idx(void **state)
{
	struct drv *d = *state;
	d->cfg.event_idx = true;
	drv_start(d, 0);
	desc(d, 0, DATA, 4, 0, 0);
	set16(gp(d, AVAIL, 2), VQ_AVAIL_F_NO_INTERRUPT); /* ignored with EVENT_IDX */

	set_used_event(d, 0);
	assert_true(push_n(d, 1));   /* entry 0 written: 0 in [0, 1) */
	assert_false(push_n(d, 1));  /* entry 1: used_event 0 is behind */
	set_used_event(d, 2);
	assert_true(push_n(d, 1));   /* entry 2 */
	set_used_event(d, 5);
	assert_true(push_n(d, 3));   /* entries 3..5 include 5 */
	set_used_event(d, 10);
	assert_false(push_n(d, 3));  /* 6..8 */
	assert_true(push_n(d, 2));   /* 9, 10 */
	assert_false(vq_should_notify(&d->vq));
}

static void event_idx_across_wrap_around(void **state)
{
	struct drv *d = *state;
	d->cfg.event_idx = true;
	drv_start(d, 65533);
	desc(d, 0, DATA, 4, 0, 0);

	/* after a restore the device cannot know what was signalled: it notifies */
	set_used_event(d, 100);
	assert_true(push_n(d, 1));   /* entry 65533 */
	set_used_event(d, 65535);
	assert_false(push_n(d, 1));  /* 65534 */
	assert_true(push_n(d, 2));   /* 65535, 0 */
	assert_int_equal(used_idx(d), 1);
	set_used_event(d, 2);
	assert_true(push_n(d, 3));   /* 1, 2, 3 */
	set_used_event(d, 65534);    /* far behind: already passed */
	assert_false(push_n(d, 4));

	/* a batch across the wrap that contains used_event */
	drv_start(d, 65530);
	set_used_event(d, 0);
	assert_false(vq_should_notify(&d->vq)); /* nothing pushed yet */
	assert_true(push_n(d, 1));   /* 65530, first after the restore */
	assert_true(push_n(d, 7));   /* 65531..1 contains 0 */
	set_used_event(d, 65535);
	assert_false(push_n(d, 2));  /* 2, 3 */
}

static void avail_event_written(void **state)
{
	struct drv *d = *state;
	d->cfg.event_idx = true;
	drv_start(d, 65534);
	desc(d, 0, DATA, 4, 0, 0);
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(avail_event(d), 65534); /* tell me about the next one */
	avail_add(d, 0);
	avail_add(d, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_CHAIN);
	/* while there was work the device did not ask again */
	assert_int_equal(avail_event(d), 65534);
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(avail_event(d), 1);
}

/* ---- scatter-gather copies ---- */

static void chain_copies(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	memcpy(gp(d, DATA, 3), "abc", 3);
	memcpy(gp(d, DATA + 0x100, 5), "defgh", 5);
	memcpy(gp(d, DATA + 0x200, 2), "ij", 2);
	memset(gp(d, DATA + 0x300, 0x300), '.', 0x300);
	desc(d, 0, DATA, 3, VQ_DESC_F_NEXT, 1);
	desc(d, 1, DATA + 0x100, 5, VQ_DESC_F_NEXT, 2);
	desc(d, 2, DATA + 0x200, 2, VQ_DESC_F_NEXT, 3);
	desc(d, 3, DATA + 0x300, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 4);
	desc(d, 4, DATA + 0x400, 1, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 5);
	desc(d, 5, DATA + 0x500, 6, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	const struct vq_chain *c = &d->c;

	char b[32];
	memset(b, 0, sizeof(b));
	assert_int_equal(vq_chain_read(c, 0, b, sizeof(b)), 10);
	assert_memory_equal(b, "abcdefghij", 10);
	memset(b, 0, sizeof(b));
	assert_int_equal(vq_chain_read(c, 2, b, 4), 4); /* across buffers */
	assert_memory_equal(b, "cdef", 4);
	assert_int_equal(vq_chain_read(c, 8, b, 8), 2); /* short at the end */
	assert_memory_equal(b, "ij", 2);
	assert_int_equal(vq_chain_read(c, 10, b, 8), 0);
	assert_int_equal(vq_chain_read(c, SIZE_MAX, b, 8), 0);
	assert_int_equal(vq_chain_read(c, 0, b, 0), 0);

	assert_int_equal(vq_chain_write(c, 3, "XYZ", 3), 3); /* 3 of buf 3, then buf 4, then buf 5 */
	assert_memory_equal(gp(d, DATA + 0x300, 4), "...X", 4);
	assert_memory_equal(gp(d, DATA + 0x400, 1), "Y", 1);
	assert_memory_equal(gp(d, DATA + 0x500, 2), "Z.", 2);
	assert_int_equal(vq_chain_write(c, 0, "0123456789abcdef", 16), 11); /* bounded */
	assert_memory_equal(gp(d, DATA + 0x300, 4), "0123", 4);
	assert_memory_equal(gp(d, DATA + 0x500, 7), "56789a.", 7);
	assert_int_equal(vq_chain_write(c, 11, "x", 1), 0);
	/* the readable buffers were not written */
	assert_memory_equal(gp(d, DATA, 3), "abc", 3);
}

/* ---- snapshots ---- */

/* A queue's state carried onto a freshly initialised one: the next chain comes
 * from the saved position, the one still in flight can be pushed, and the
 * EVENT_IDX decision continues from the saved signalled index. */
static void state_carries_over(void **state)
{
	struct drv *d = *state;
	drv_config(d, QSIZE, true, false);
	drv_start(d, 0xfffe); /* across the wrap */
	for (uint16_t i = 0; i < 3; i++) {
		desc(d, i, DATA + 0x100 * i, 16, VQ_DESC_F_WRITE, 0);
		avail_add(d, i);
	}
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(vq_push(&d->vq, d->c.head, 1), 0);
	set_used_event(d, 0xfffe);
	assert_true(vq_should_notify(&d->vq));
	assert_int_equal(pop(d), VQ_CHAIN); /* head 1 stays in flight */
	struct vq_state st;
	vq_get_state(&d->vq, &st);
	assert_int_equal(st.last_avail, 0);
	assert_int_equal(st.used_idx, 0xffff);
	assert_int_equal(st.inflight, 1);

	struct vq fresh;
	const char *why = NULL;
	assert_int_equal(vq_init(&fresh, &d->m, &d->cfg), 0);
	assert_int_equal(vq_set_state(&fresh, &st, &why), 0);
	assert_int_equal(vq_push(&fresh, 1, 4), 0); /* the chain in flight */
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(used_id(d, 0xffff), 1);
	set_used_event(d, 0xfffe); /* already signalled past it: no interrupt */
	assert_false(vq_should_notify(&fresh));
	assert_int_equal(vq_pop(&fresh, &d->c), VQ_CHAIN);
	assert_int_equal(d->c.head, 2);
	assert_int_equal(vq_pop(&fresh, &d->c), VQ_EMPTY);
}

static void state_checks(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	struct vq_state ok = {.last_avail = 7, .used_idx = 5, .inflight = 2};
	const char *why = NULL;
	struct vq_state bad = ok;
	bad.inflight = QSIZE + 1;
	bad.used_idx = (uint16_t)(bad.last_avail - bad.inflight);
	assert_int_equal(vq_set_state(&d->vq, &bad, &why), -1);
	assert_non_null(why);
	bad = ok;
	bad.used_idx = 6; /* 6 + 2 != 7 */
	assert_int_equal(vq_set_state(&d->vq, &bad, &why), -1);
	bad = ok;
	bad.err = VQ_ERR_CONFIG;
	assert_int_equal(vq_set_state(&d->vq, &bad, &why), -1);
	bad.err = -99;
	assert_int_equal(vq_set_state(&d->vq, &bad, &why), -1);
	assert_int_equal(d->vq.last_avail, 0); /* untouched by the refusals */
	assert_int_equal(vq_set_state(&d->vq, &ok, &why), 0);
	assert_int_equal(d->vq.inflight, 2);
	struct vq unconfigured;
	vq_reset(&unconfigured);
	assert_int_equal(vq_set_state(&unconfigured, &ok, &why), -1);
}

/* A chain given back is popped again, whole, and nothing is pushed for it. */
static void unpop_gives_chains_back(void **state)
{
	struct drv *d = *state;
	drv_start(d, 0);
	desc(d, 0, DATA, 8, VQ_DESC_F_WRITE, 0);
	desc(d, 1, DATA + 0x100, 8, VQ_DESC_F_WRITE, 0);
	avail_add(d, 0);
	avail_add(d, 1);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(vq_unpop(&d->vq, 3), -1);
	assert_int_equal(vq_unpop(&d->vq, 2), 0);
	assert_int_equal(d->vq.inflight, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.head, 0);
	assert_int_equal(pop(d), VQ_CHAIN);
	assert_int_equal(d->c.head, 1);
	assert_int_equal(pop(d), VQ_EMPTY);
	assert_int_equal(used_idx(d), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define T_HOLE(f) cmocka_unit_test_setup_teardown(f, setup_hole, teardown)
#define T_HUGE(f) cmocka_unit_test_setup_teardown(f, setup_huge, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(init_checks_config),
		T(unconfigured_queue_refuses),
		T(empty_queue),
		T(simple_chain_and_used_ring),
		T(several_chains_pushed_out_of_order),
		T(indices_wrap_around),
		T(chain_as_long_as_the_queue),
		T(avail_idx_too_far_ahead),
		T(more_outstanding_than_the_queue),
		T(head_out_of_range),
		T(next_out_of_range),
		T(descriptor_loops),
		T(buffers_outside_ram),
		T_HOLE(buffers_around_the_mmio_hole),
		T(zero_length_refused),
		T(readable_after_writable),
		T(chain_longer_than_caller_accepts),
		T_HUGE(huge_lengths),
		T(indirect_table),
		T(indirect_malformed),
		T(indirect_loops_and_length),
		T(notify_without_event_idx),
		T(notify_with_event_idx),
		T(event_idx_across_wrap_around),
		T(avail_event_written),
		T(chain_copies),
		T(state_carries_over),
		T(state_checks),
		T(unpop_gives_chains_back),
	};
	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
