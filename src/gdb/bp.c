#include "gdb/bp.h"

#include <string.h>

#define BP_VECTOR 3
#define DB_VECTOR 1
#define DR6_BS (1ULL << 14)
#define INT3 0xcc

void gdb_bps_init(struct gdb_bps *b)
{
	memset(b, 0, sizeof(*b));
	for (int i = 0; i < GDB_HW_SLOTS; i++)
		b->slot_req[i] = -1;
}

/* ---- software breakpoints ---- */

int gdb_bps_plant(struct gdb_bps *b, const struct gmem *m, uint64_t gva, uint64_t gpa)
{
	if (gdb_bps_has_sw(b, gva))
		return 0; /* gdb may insert twice */
	uint8_t *p = gmem_ptr(m, gpa, 1);
	if (!p || b->nr_sw == GDB_MAX_SW_BP)
		return -1;
	b->sw[b->nr_sw++] = (struct gdb_sw_bp){.gva = gva, .gpa = gpa, .orig = *p};
	*p = INT3;
	return 0;
}

static void unplant_at(struct gdb_bps *b, const struct gmem *m, unsigned i)
{
	uint8_t *p = gmem_ptr(m, b->sw[i].gpa, 1);
	if (p && *p == INT3)
		*p = b->sw[i].orig;
	b->sw[i] = b->sw[--b->nr_sw];
}

void gdb_bps_unplant(struct gdb_bps *b, const struct gmem *m, uint64_t gva)
{
	for (unsigned i = 0; i < b->nr_sw; i++) {
		if (b->sw[i].gva == gva) {
			unplant_at(b, m, i);
			return;
		}
	}
}

void gdb_bps_unplant_all(struct gdb_bps *b, const struct gmem *m)
{
	while (b->nr_sw)
		unplant_at(b, m, b->nr_sw - 1);
}

bool gdb_bps_has_sw(const struct gdb_bps *b, uint64_t gva)
{
	for (unsigned i = 0; i < b->nr_sw; i++)
		if (b->sw[i].gva == gva)
			return true;
	return false;
}

void gdb_bps_hide(const struct gdb_bps *b, uint64_t gpa, uint8_t *buf, size_t n)
{
	for (unsigned i = 0; i < b->nr_sw; i++)
		if (b->sw[i].gpa >= gpa && b->sw[i].gpa - gpa < n)
			buf[b->sw[i].gpa - gpa] = b->sw[i].orig;
}

void gdb_bps_rewrite(struct gdb_bps *b, const struct gmem *m, uint64_t gpa, size_t n)
{
	for (unsigned i = 0; i < b->nr_sw; i++) {
		if (b->sw[i].gpa < gpa || b->sw[i].gpa - gpa >= n)
			continue;
		uint8_t *p = gmem_ptr(m, b->sw[i].gpa, 1);
		if (p) {
			b->sw[i].orig = *p;
			*p = INT3;
		}
	}
}

/* ---- hardware breakpoints and watchpoints ---- */

/* DR7 for slot i: global enable, R/W type, length. */
static uint64_t dr7_bits(int i, unsigned rw, uint64_t len)
{
	unsigned lenbits = len == 1 ? 0 : len == 2 ? 1 : len == 8 ? 2 : 3;
	return (1ULL << (2 * i + 1)) | (uint64_t)rw << (16 + 4 * i) | (uint64_t)lenbits << (18 + 4 * i);
}

int gdb_bps_hw_insert(struct gdb_bps *b, char type, uint64_t addr, uint64_t len)
{
	if (type < '1' || type > '4')
		return -1;
	/* x86 has no read-only data breakpoint: a read watchpoint watches reads and
	 * writes, and gdb tells them apart by whether the value changed. */
	unsigned rw = type == '1' ? 0 : type == '2' ? 1 : 3;
	if (type == '1')
		len = 1;
	if (len == 0 || addr + len < addr)
		return -1;
	int r = -1;
	for (int i = 0; i < GDB_HW_SLOTS; i++) {
		const struct gdb_hw_req *q = &b->hw[i];
		if (q->used && q->type == type && q->addr == addr && q->len == len)
			return 0;
		if (!q->used && r < 0)
			r = i;
	}
	if (r < 0)
		return -1;
	int slot[GDB_HW_SLOTS];
	uint64_t piece_addr[GDB_HW_SLOTS], piece_len[GDB_HW_SLOTS];
	int n = 0, next = 0;
	for (uint64_t a = addr; a - addr < len;) {
		uint64_t l = 8;
		while (l > 1 && ((a & (l - 1)) || l > len - (a - addr)))
			l /= 2;
		while (next < GDB_HW_SLOTS && b->slot_req[next] >= 0)
			next++;
		if (next == GDB_HW_SLOTS)
			return -1; /* not enough debug registers; nothing changed */
		slot[n] = next++;
		piece_addr[n] = a;
		piece_len[n] = l;
		n++;
		a += l;
	}
	b->hw[r] = (struct gdb_hw_req){.used = true, .type = type, .addr = addr, .len = len};
	for (int j = 0; j < n; j++) {
		b->slot_req[slot[j]] = r;
		b->dr[slot[j]] = piece_addr[j];
		b->dr7 |= dr7_bits(slot[j], rw, piece_len[j]);
		b->hw[r].slots |= (uint8_t)(1u << slot[j]);
	}
	return 0;
}

static void drop_req(struct gdb_bps *b, int r)
{
	for (int i = 0; i < GDB_HW_SLOTS; i++) {
		if (b->slot_req[i] != r)
			continue;
		b->slot_req[i] = -1;
		b->dr[i] = 0;
		b->dr7 &= ~(dr7_bits(i, 3, 4) | 1ULL << (2 * i));
	}
	b->hw[r] = (struct gdb_hw_req){0};
}

void gdb_bps_hw_remove(struct gdb_bps *b, char type, uint64_t addr, uint64_t len)
{
	if (type == '1')
		len = 1;
	for (int r = 0; r < GDB_HW_SLOTS; r++) {
		const struct gdb_hw_req *q = &b->hw[r];
		if (q->used && q->type == type && q->addr == addr && q->len == len)
			drop_req(b, r);
	}
}

void gdb_bps_hw_clear(struct gdb_bps *b)
{
	for (int r = 0; r < GDB_HW_SLOTS; r++)
		if (b->hw[r].used)
			drop_req(b, r);
	b->dr7 = 0;
}

/* ---- debug exits ---- */

bool gdb_bps_classify(const struct gdb_bps *b, bool stepping, const struct kvm_debug_exit_arch *a,
		      struct gdb_event *ev)
{
	if (a->exception == BP_VECTOR) {
		if (!gdb_bps_has_sw(b, a->pc))
			return false;
		*ev = (struct gdb_event){.kind = GDB_STOP_SWBP, .addr = a->pc, .slot = -1};
		return true;
	}
	if (a->exception != DB_VECTOR)
		return false;
	for (int slot = 0; slot < GDB_HW_SLOTS; slot++) {
		int r = b->slot_req[slot];
		if (!(a->dr6 & (1ULL << slot)) || r < 0)
			continue;
		const struct gdb_hw_req *q = &b->hw[r];
		*ev = (struct gdb_event){.kind = q->type == '1' ? GDB_STOP_HWBP : GDB_STOP_WATCH,
					 .addr = q->type == '1' ? q->addr : b->dr[slot],
					 .type = q->type, .slot = slot};
		return true;
	}
	if ((a->dr6 & DR6_BS) && stepping) {
		*ev = (struct gdb_event){.kind = GDB_STOP_STEP, .addr = a->pc, .slot = -1};
		return true;
	}
	return false;
}

bool gdb_bps_still_valid(const struct gdb_bps *b, const struct gdb_event *ev)
{
	switch (ev->kind) {
	case GDB_STOP_SWBP:
		return gdb_bps_has_sw(b, ev->addr);
	case GDB_STOP_HWBP:
	case GDB_STOP_WATCH:
		return ev->slot >= 0 && ev->slot < GDB_HW_SLOTS && b->slot_req[ev->slot] >= 0 &&
		       b->hw[b->slot_req[ev->slot]].type == ev->type;
	default:
		return false;
	}
}
