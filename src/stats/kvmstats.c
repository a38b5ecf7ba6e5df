#include "stats/kvmstats.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Bounds on what the kernel may hand us: a file we parse is still input. */
#define MAX_DESC 4096
#define MAX_NAME 256
#define MAX_WORDS 65536

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		done += (size_t)r;
	}
	return 0;
}

int kvmstats_parse(struct kvmstats *s, int fd)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1; /* fd is ours only once parsed */
	struct kvm_stats_header h;
	if (pread_all(fd, &h, sizeof(h), 0) < 0)
		return -1;
	if (h.num_desc > MAX_DESC || h.name_size == 0 || h.name_size > MAX_NAME) {
		errno = EINVAL;
		return -1;
	}
	size_t dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	uint8_t *raw = malloc(dsz * (h.num_desc ? h.num_desc : 1));
	s->desc = calloc(h.num_desc ? h.num_desc : 1, sizeof(*s->desc));
	if (!raw || !s->desc || pread_all(fd, raw, dsz * h.num_desc, h.desc_offset) < 0) {
		int e = errno;
		free(raw);
		free(s->desc);
		memset(s, 0, sizeof(*s));
		s->fd = -1; /* the caller still owns fd */
		errno = e ? e : ENOMEM;
		return -1;
	}
	uint32_t words = 0;
	for (uint32_t i = 0; i < h.num_desc; i++) {
		const struct kvm_stats_desc *d = (const struct kvm_stats_desc *)(raw + i * dsz);
		/* Offsets are in bytes inside the data block; each value is a u64. */
		uint32_t end = d->offset / 8 + d->size;
		if (d->offset % 8 || d->size == 0 || end > MAX_WORDS)
			continue;
		if (end > words)
			words = end;
		if (d->size != 1)
			continue; /* histograms: not kept */
		struct kvmstat_desc *o = &s->desc[s->nr++];
		size_t n = strnlen(d->name, h.name_size);
		if (n >= KVMSTATS_NAME_MAX)
			n = KVMSTATS_NAME_MAX - 1;
		memcpy(o->name, d->name, n);
		o->name[n] = 0;
		o->offset = d->offset / 8;
		o->type = (uint8_t)((d->flags & KVM_STATS_TYPE_MASK) >> KVM_STATS_TYPE_SHIFT);
		o->unit = (uint8_t)((d->flags & KVM_STATS_UNIT_MASK) >> KVM_STATS_UNIT_SHIFT);
		o->exponent = d->exponent;
	}
	free(raw);
	s->data_offset = h.data_offset;
	s->data_words = words;
	s->fd = fd;
	s->data = calloc(words ? words : 1, sizeof(uint64_t));
	if (!s->data) {
		free(s->desc);
		memset(s, 0, sizeof(*s));
		s->fd = -1; /* the caller still owns fd */
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

int kvmstats_open(struct kvmstats *s, int kvm_fd)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	int fd = ioctl(kvm_fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0)
		return -1;
	if (kvmstats_parse(s, fd) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return 0;
}

int kvmstats_read(struct kvmstats *s)
{
	if (s->fd < 0 || !s->data)
		return -1;
	return pread_all(s->fd, s->data, (size_t)s->data_words * 8, s->data_offset);
}

int kvmstats_find(const struct kvmstats *s, const char *name)
{
	for (uint32_t i = 0; i < s->nr; i++)
		if (strcmp(s->desc[i].name, name) == 0)
			return (int)i;
	return -1;
}

uint64_t kvmstats_value(const struct kvmstats *s, int i)
{
	if (i < 0 || (uint32_t)i >= s->nr || !s->data)
		return 0;
	return s->data[s->desc[i].offset];
}

void kvmstats_close(struct kvmstats *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->desc);
	free(s->data);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}
