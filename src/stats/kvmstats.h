/* KVM's binary statistics (KVM_GET_STATS_FD, Linux 5.14+): the counters KVM
 * keeps itself for a VM or a vCPU, among them the exits it handles in the kernel
 * (halts, interrupts, ioeventfd writes...) that kite never sees.
 *
 * The file is a header, descriptors (name, type, size, offset) and a data block
 * of u64 values; kite reads the descriptors once and the data block with one
 * pread per sample. Only scalar statistics (size 1) are kept. */
#ifndef KITE_KVMSTATS_H
#define KITE_KVMSTATS_H

#include <stddef.h>
#include <stdint.h>

#define KVMSTATS_NAME_MAX 48

struct kvmstat_desc {
	char name[KVMSTATS_NAME_MAX];
	uint32_t offset;  /* in u64 units inside the data block */
	uint8_t type;     /* KVM_STATS_TYPE_* >> shift: 0 cumulative, 1 instant, 2 peak, ... */
	uint8_t unit;     /* KVM_STATS_UNIT_* >> shift: 0 none, 1 bytes, 2 seconds, 3 cycles, 4 boolean */
	int16_t exponent; /* value * 10^exponent (nanoseconds: -9) */
};

struct kvmstats {
	int fd;
	uint32_t nr;             /* scalar statistics kept */
	struct kvmstat_desc *desc;
	uint64_t data_offset;    /* byte offset of the data block in the file */
	uint32_t data_words;     /* u64 words in the data block */
	uint64_t *data;          /* last read, data_words values */
};

/* Opens the statistics of a VM or vCPU fd. 0, or -1 (errno) when KVM has none. */
int kvmstats_open(struct kvmstats *s, int kvm_fd);
/* Parses a statistics file image already open in fd (for tests). */
int kvmstats_parse(struct kvmstats *s, int fd);
/* Reads every value (one pread). 0 or -1. */
int kvmstats_read(struct kvmstats *s);
/* Index of a statistic by name, or -1. */
int kvmstats_find(const struct kvmstats *s, const char *name);
/* Value of statistic i from the last read (0 for i < 0). */
uint64_t kvmstats_value(const struct kvmstats *s, int i);
void kvmstats_close(struct kvmstats *s);

#endif
