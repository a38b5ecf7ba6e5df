/* virtio-pci snapshots on real KVM VMs (skipped without a usable /dev/kvm): a
 * driver played by the test brings a device up through its BAR (MSI-X,
 * features, a queue), the device serves chains, the transport's state is
 * saved, guest RAM copied into a second VM, and the restored device carries
 * on: same configuration read back, next chain served from the saved index,
 * chains made available while paused served by the kick at restore. Then the
 * refusals: another device at that index, guest features outside the offered
 * ones, a queue size that is no power of two, short and long sections, a
 * device without ops->save, a save without quiesce.
 *
 * The device is a fake (two queues, pops and answers every chain with one
 * byte), so what is tested is the transport; each real device's own bytes are
 * tested in its own file. */
#include "unit.h"

#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "devices/pci.h"
#include "snap_test.h"
#include "virtio/virtio.h"
#include "vmm/vm.h"

#define QSIZE 16
#define DESC 0x10000ULL
#define AVAIL 0x11000ULL
#define USED 0x12000ULL
#define DATA 0x20000ULL
#define MSI_ADDR 0xfee00000ULL

/* BAR0 layout of src/virtio/pci.c. */
#define OFF_COMMON 0x0000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX_TABLE 0x4000
#define CAP_MSIX 0x84
#define SNAP_MAGIC_FAKE 0xfeedf00du

struct fake {
	struct vq_chain c;
	unsigned activations, served;
	uint32_t restored_served;
};

static void fake_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)d;
	(void)off;
	memset(data, 0, len);
}

static int fake_activate(struct virtio_dev *d)
{
	struct fake *f = d->priv;
	f->activations++;
	return 0;
}

static void fake_notify(struct virtio_dev *d, unsigned q)
{
	struct fake *f = d->priv;
	struct vq *vq = virtio_dev_queue(d, q);
	if (!vq)
		return;
	while (vq_pop(vq, &f->c) == VQ_CHAIN) {
		uint8_t b = (uint8_t)f->served++;
		vq_chain_write(&f->c, 0, &b, 1);
		vq_push(vq, f->c.head, 1);
	}
	virtio_dev_signal(d, q);
}

static void fake_reset(struct virtio_dev *d) { (void)d; }

static int fake_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	(void)err;
	struct fake *f = d->priv;
	snapw_u32(w, SNAP_MAGIC_FAKE);
	snapw_u32(w, f->served);
	return 0;
}

static int fake_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	struct fake *f = d->priv;
	uint32_t magic = snapc_u32(c), served = snapc_u32(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: fake state is short", d->name);
	if (magic != SNAP_MAGIC_FAKE)
		return err_set(err, KITE_EXIT_IMAGE, "%s: bad fake state", d->name);
	f->restored_served = served;
	f->served = served;
	return 0;
}

#define FAKE_OPS(id, save_fn)                                                                     \
	{                                                                                         \
		.device_id = (id), .num_queues = 2, .queue_max_size = QSIZE, .config_len = 4,     \
		.config_read = fake_config_read, .activate = fake_activate,                       \
		.notify = fake_notify, .reset = fake_reset, .save = (save_fn),                     \
		.restore = fake_restore,                                                          \
	}

static const struct virtio_dev_ops fake_ops = FAKE_OPS(VIRTIO_ID_RNG, fake_save);
static const struct virtio_dev_ops other_ops = FAKE_OPS(VIRTIO_ID_BALLOON, fake_save);
static const struct virtio_dev_ops nosave_ops = FAKE_OPS(VIRTIO_ID_RNG, NULL);

struct machine {
	struct vm vm;
	struct vm_config cfg;
	struct pci_bus bus;
	struct fake fake;
	struct virtio_dev *d;
	struct pci_dev *p;
	uint16_t avail_idx;
};

static bool have_kvm;

static void up(struct machine *m, const struct virtio_dev_ops *ops)
{
	struct kite_err err = {0};
	memset(m, 0, sizeof(*m));
	m->cfg = (struct vm_config){.cpus = 1, .mem_mib = 16};
	vm_init(&m->vm);
	assert_int_equal(kvm_open(&m->vm, &err), 0);
	assert_int_equal(vm_create(&m->vm, &m->cfg, &err), 0);
	pci_bus_init(&m->bus);
	m->vm.pci = &m->bus;
	assert_int_equal(vq_chain_alloc(&m->fake.c, QSIZE), 0);
	m->d = virtio_pci_create(&m->vm, ops, &m->fake, 0, "virtio-fake0", &err);
	assert_non_null(m->d);
	m->p = m->bus.slot[1];
	assert_non_null(m->p);
}

static void down(struct machine *m)
{
	virtio_destroy_all(&m->vm);
	vm_destroy(&m->vm);
	vq_chain_free(&m->fake.c);
}

static uint8_t *gp(struct machine *m, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&m->vm.mem, gpa, len);
	assert_non_null(p);
	return p;
}

static void bar_wr(struct machine *m, uint64_t off, unsigned size, uint64_t v)
{
	uint8_t b[8];
	for (unsigned i = 0; i < size; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	m->p->ops->bar_write(m->p, 0, off, b, size);
}

static uint64_t bar_rd(struct machine *m, uint64_t off, unsigned size)
{
	uint8_t b[8] = {0};
	m->p->ops->bar_read(m->p, 0, off, b, size);
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static void cfg_wr(struct machine *m, unsigned reg, unsigned size, uint32_t v)
{
	uint8_t a[4], b[4];
	set32(a, 0x80000000u | 1u << 11 | (reg & 0xfc));
	pci_io_write(&m->bus, 0, a, 4);
	set32(b, v);
	pci_io_write(&m->bus, 4 + (reg & 3), b, size);
}

/* The driver: MSI-X on with vector 0 unmasked, VERSION_1 + EVENT_IDX, queue 0
 * of QSIZE on vector 0, DRIVER_OK. The BAR moved from where the "firmware"
 * put it, so the restore must register ioeventfds at the guest's address. */
static void driver_up(struct machine *m)
{
	cfg_wr(m, 0x10, 4, 0xe1000000u);
	cfg_wr(m, 0x04, 2, 0x0006);
	cfg_wr(m, CAP_MSIX + 2, 2, 0x8000);
	bar_wr(m, OFF_MSIX_TABLE, 8, MSI_ADDR);
	bar_wr(m, OFF_MSIX_TABLE + 8, 4, 0x41);
	bar_wr(m, OFF_MSIX_TABLE + 12, 4, 0);
	bar_wr(m, OFF_COMMON + 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	bar_wr(m, OFF_COMMON + 0x08, 4, 0);
	bar_wr(m, OFF_COMMON + 0x0c, 4, 1u << VIRTIO_F_EVENT_IDX);
	bar_wr(m, OFF_COMMON + 0x08, 4, 1);
	bar_wr(m, OFF_COMMON + 0x0c, 4, 1); /* VERSION_1 */
	bar_wr(m, OFF_COMMON + 0x14, 1, 0x0b);
	bar_wr(m, OFF_COMMON + 0x16, 2, 0);
	bar_wr(m, OFF_COMMON + 0x18, 2, QSIZE);
	bar_wr(m, OFF_COMMON + 0x1a, 2, 0);
	bar_wr(m, OFF_COMMON + 0x20, 8, DESC);
	bar_wr(m, OFF_COMMON + 0x28, 8, AVAIL);
	bar_wr(m, OFF_COMMON + 0x30, 8, USED);
	bar_wr(m, OFF_COMMON + 0x1c, 2, 1);
	bar_wr(m, OFF_COMMON + 0x14, 1, 0x0f);
	assert_int_equal(bar_rd(m, OFF_COMMON + 0x14, 1), 0x0f);
}

/* One writable buffer per chain, at descriptor i; made available, not kicked. */
static void make_available(struct machine *m, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		uint16_t i = m->avail_idx % QSIZE;
		uint8_t *dsc = gp(m, DESC + 16ULL * i, 16);
		set64(dsc, DATA + 0x100ULL * i);
		set32(dsc + 8, 64);
		set16(dsc + 12, 2); /* WRITE */
		set16(dsc + 14, 0);
		set16(gp(m, AVAIL + 4 + 2ULL * i, 2), i);
		m->avail_idx++;
		set16(gp(m, AVAIL + 2, 2), m->avail_idx);
	}
}

static uint16_t used_idx(struct machine *m)
{
	return le16(gp(m, USED + 2, 2));
}

static void kick(struct machine *m)
{
	bar_wr(m, OFF_NOTIFY, 2, 0);
}

static void wait_used(struct machine *m, uint16_t want)
{
	for (int i = 0; i < 2000 && used_idx(m) != want; i++)
		usleep(1000);
	assert_int_equal(used_idx(m), want);
}

/* m1 brought up, 3 chains served, 2 more made available but not kicked (the
 * guest added them just before the pause), then saved into r. */
static void saved_machine(struct machine *m1, struct snap_reader *r)
{
	up(m1, &fake_ops);
	driver_up(m1);
	make_available(m1, 3);
	kick(m1);
	wait_used(m1, 3);
	make_available(m1, 2);
	struct snap_writer w;
	snapw_init(&w);
	struct kite_err err = {0};
	virtio_quiesce_all(&m1->vm);
	assert_int_equal(virtio_save_all(&m1->vm, &w, &err), 0);
	virtio_resume_all(&m1->vm);
	snap_test_reopen(&w, r);
}

static void copy_ram(struct machine *to, struct machine *from)
{
	uint64_t len = from->cfg.mem_mib << 20;
	memcpy(gp(to, 0, len), gp(from, 0, len), len);
}

static void need_kvm(void)
{
	if (!have_kvm)
		skip();
}

static void round_trip(void **state)
{
	(void)state;
	need_kvm();
	struct machine *m1 = calloc(1, sizeof(*m1)), *m2 = calloc(1, sizeof(*m2));
	assert_non_null(m1);
	assert_non_null(m2);
	struct snap_reader r;
	saved_machine(m1, &r);
	/* The resumed source serves the two waiting chains too. */
	wait_used(m1, 5);

	up(m2, &fake_ops);
	copy_ram(m2, m1);
	m2->avail_idx = m1->avail_idx;
	set16(gp(m2, USED + 2, 2), 3); /* RAM as it was at the snapshot */
	struct kite_err err = {0};
	assert_int_equal(virtio_restore_all(&m2->vm, &r, &err), 0);
	assert_int_equal(err.code, 0);
	/* Activated once; the kick at restore served what waited, in order. */
	assert_int_equal(m2->fake.activations, 1);
	assert_int_equal(m2->fake.restored_served, 3);
	wait_used(m2, 5);
	assert_int_equal(le32(gp(m2, USED + 4 + 8 * 3, 4)), 3);
	assert_int_equal(le32(gp(m2, USED + 4 + 8 * 4, 4)), 4);
	/* The configuration reads back as the driver left it. */
	assert_int_equal(bar_rd(m2, OFF_COMMON + 0x14, 1), 0x0f);
	bar_wr(m2, OFF_COMMON + 0x08, 4, 1);
	assert_int_equal(bar_rd(m2, OFF_COMMON + 0x0c, 4), 1);
	assert_int_equal(bar_rd(m2, OFF_COMMON + 0x18, 2), QSIZE);
	assert_int_equal(bar_rd(m2, OFF_COMMON + 0x1a, 2), 0);
	assert_int_equal(bar_rd(m2, OFF_COMMON + 0x1c, 2), 1);
	assert_true(bar_rd(m2, OFF_COMMON + 0x20, 8) == DESC);
	assert_true(bar_rd(m2, OFF_MSIX_TABLE, 8) == MSI_ADDR);
	assert_int_equal(bar_rd(m2, OFF_MSIX_TABLE + 8, 4), 0x41);
	assert_int_equal(pci_bar_addr(m2->p, 0), 0xe1000000u);
	assert_true(m2->p->cfg[CAP_MSIX + 3] & 0x80);
	/* And the next chain is served from index 5. */
	make_available(m2, 1);
	kick(m2);
	wait_used(m2, 6);
	assert_int_equal(le32(gp(m2, USED + 4 + 8 * 5, 4)), 5);
	assert_int_equal(*gp(m2, DATA + 0x100 * 5, 1), 5); /* the device's own count went on */
	/* The ioeventfd sits at the guest's BAR: KVM refuses a second one there. */
	struct kvm_ioeventfd io = {.addr = 0xe1000000u + OFF_NOTIFY, .len = 2, .fd = m2->d->queues[0].kick_fd};
	assert_int_equal(ioctl(m2->vm.vm_fd, KVM_IOEVENTFD, &io), -1);
	snapr_free(&r);
	down(m2);
	down(m1);
	free(m1);
	free(m2);
}

/* Restores r into a fresh machine with ops: the error, the machine torn down. */
static void expect_refused(const struct snap_reader *r, const struct virtio_dev_ops *ops, const char *what)
{
	struct machine *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	up(m, ops);
	struct kite_err err = {0};
	assert_int_equal(virtio_restore_all(&m->vm, r, &err), -1);
	assert_image_err(&err);
	if (!strstr(err.msg, what))
		fail_msg("'%s' does not say '%s'", err.msg, what);
	assert_int_equal(m->fake.activations, 0); /* nothing started */
	down(m);
	free(m);
}

/* The source's state changed under its lock before a save. */
static void save_patched(struct machine *m, void (*patch)(struct virtio_dev *), struct snap_reader *r)
{
	struct snap_writer w;
	snapw_init(&w);
	struct kite_err err = {0};
	virtio_quiesce_all(&m->vm);
	patch(m->d);
	assert_int_equal(virtio_save_all(&m->vm, &w, &err), 0);
	virtio_resume_all(&m->vm);
	snap_test_reopen(&w, r);
}

static uint64_t saved_features;
static void foreign_feature(struct virtio_dev *d)
{
	saved_features = d->guest_features;
	d->guest_features |= VIRTIO_BIT(40);
}
static void odd_queue_size(struct virtio_dev *d) { d->queues[1].size = 3; }
static void rings_outside_ram(struct virtio_dev *d) { d->queues[0].used = 0xfff00000ULL; }
static void positions_off(struct virtio_dev *d) { d->queues[0].vq.used_idx++; }

static void refusals(void **state)
{
	(void)state;
	need_kvm();
	struct machine *m1 = calloc(1, sizeof(*m1));
	assert_non_null(m1);
	struct snap_reader r, bad;
	saved_machine(m1, &r);

	expect_refused(&r, &other_ops, "device id");

	snap_test_resize(&r, "VIRT", 0, 1, &bad);
	expect_refused(&bad, &fake_ops, "short");
	snapr_free(&bad);
	snap_test_resize(&r, "VIRT", 0, -1, &bad);
	expect_refused(&bad, &fake_ops, "longer");
	snapr_free(&bad);

	save_patched(m1, foreign_feature, &bad);
	m1->d->guest_features = saved_features;
	expect_refused(&bad, &fake_ops, "not a subset");
	snapr_free(&bad);

	save_patched(m1, odd_queue_size, &bad);
	expect_refused(&bad, &fake_ops, "queue 1 size 3");
	snapr_free(&bad);
	m1->d->queues[1].size = QSIZE;

	uint64_t used = m1->d->queues[0].used;
	save_patched(m1, rings_outside_ram, &bad);
	m1->d->queues[0].used = used;
	expect_refused(&bad, &fake_ops, "not in guest RAM");
	snapr_free(&bad);

	save_patched(m1, positions_off, &bad);
	m1->d->queues[0].vq.used_idx--;
	expect_refused(&bad, &fake_ops, "positions");
	snapr_free(&bad);

	snapr_free(&r);
	down(m1);
	free(m1);
}

/* A device without ops->save, or a save without quiesce: refused before a
 * byte is written. */
static void save_refusals(void **state)
{
	(void)state;
	need_kvm();
	struct machine *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	up(m, &nosave_ops);
	struct snap_writer w;
	snapw_init(&w);
	struct kite_err err = {0};
	virtio_quiesce_all(&m->vm);
	assert_int_equal(virtio_save_all(&m->vm, &w, &err), -1);
	virtio_resume_all(&m->vm);
	assert_string_equal(err.msg, "virtio-fake0 cannot be snapshotted yet");
	assert_int_equal(w.nsec, 0);
	assert_false(w.open);
	down(m);

	up(m, &fake_ops);
	err = (struct kite_err){0};
	assert_int_equal(virtio_save_all(&m->vm, &w, &err), -1);
	assert_non_null(strstr(err.msg, "not quiesced"));
	assert_int_equal(w.nsec, 0);
	snapw_free(&w);
	down(m);
	free(m);
}

static int group_setup(void **state)
{
	(void)state;
	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(refusals),
		cmocka_unit_test(save_refusals),
	};
	return cmocka_run_group_tests_name("virtio_snap", tests, group_setup, NULL);
}
