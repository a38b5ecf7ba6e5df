/* `kite run` device options: --disk, --net, --vsock, --balloon parse into
 * vm_config, or fail with one line naming what was wrong and leave the config
 * as it was. */
#include "unit.h"

#include <stdio.h>

#include "util/devopts.h"

static char msg[256];

static int disk(struct vm_config *c, const char *arg)
{
	static char buf[16][128];
	static int n;
	char *b = buf[n++ % 16];
	snprintf(b, 128, "%s", arg);
	return devopt_disk(b, c, msg, sizeof(msg));
}

static void disks(void **state)
{
	(void)state;
	struct vm_config c = {0};
	assert_int_equal(disk(&c, "/img/root.ext4"), 0);
	assert_int_equal(disk(&c, "/img/data,ro,id=data,serial=SN1"), 0);
	assert_int_equal(disk(&c, "path=/img/a,b"), -1); /* 'b' is not an item */
	assert_string_equal(msg, "--disk: unknown item 'b' (expected ro, id=NAME or serial=S)");
	assert_int_equal(c.nr_disks, 2);
	assert_string_equal(c.disks[0].path, "/img/root.ext4");
	assert_string_equal(c.disks[0].id, "disk0");
	assert_false(c.disks[0].read_only);
	assert_null(c.disks[0].serial);
	assert_string_equal(c.disks[1].path, "/img/data");
	assert_string_equal(c.disks[1].id, "data");
	assert_true(c.disks[1].read_only);
	assert_string_equal(c.disks[1].serial, "SN1");
	/* a made-up id lives in the config, not in a buffer the parser reuses */
	assert_ptr_equal(c.disks[0].id, c.disks[0].auto_id);
}

static void disk_errors(void **state)
{
	(void)state;
	struct vm_config c = {0};
	assert_int_equal(disk(&c, "a,id=x"), 0);
	assert_int_equal(disk(&c, "b,id=x"), -1);
	assert_string_equal(msg, "--disk: duplicate drive id 'x'");
	assert_int_equal(disk(&c, "b,id=disk2"), 0);
	assert_int_equal(disk(&c, "c"), -1); /* its made-up id, disk2, is taken */
	assert_string_equal(msg, "--disk: duplicate drive id 'disk2'");
	assert_int_equal(c.nr_disks, 2);
	c.nr_disks = 0;
	assert_int_equal(disk(&c, ""), -1);
	assert_int_equal(disk(&c, "a,id=bad id"), -1);
	assert_int_equal(disk(&c, "a,serial=012345678901234567890"), -1); /* 21 bytes */
	assert_int_equal(disk(&c, "a,serial=01234567890123456789"), 0);  /* 20 */
	assert_int_equal(c.nr_disks, 1);
	for (int i = 1; i < KITE_MAX_DISKS; i++)
		assert_int_equal(disk(&c, "x"), 0);
	assert_int_equal(disk(&c, "x"), -1);
	assert_string_equal(msg, "--disk: at most 16 disks");
}

static void nets(void **state)
{
	(void)state;
	struct vm_config c = {0};
	char a[] = "tap=tap0,mac=06:00:ac:10:00:02,id=eth0", b[] = "tap=tap1", d[] = "tap=tap0,id=x",
	     e[] = "mac=06:00:00:00:00:01", f[] = "tap=tap2,mac=01:00:00:00:00:01", g[] = "tap=abcdefghijklmnop",
	     h[] = "tap=t3,mac=06:00:00:00:00", i[] = "tap=t4,id=net1";
	assert_int_equal(devopt_net(a, &c, msg, sizeof(msg)), 0);
	assert_int_equal(devopt_net(b, &c, msg, sizeof(msg)), 0);
	assert_string_equal(c.nics[0].tap, "tap0");
	assert_string_equal(c.nics[0].id, "eth0");
	assert_true(c.nics[0].has_mac);
	const uint8_t mac[6] = {6, 0, 0xac, 0x10, 0, 2};
	assert_memory_equal(c.nics[0].mac, mac, 6);
	assert_string_equal(c.nics[1].id, "net1");
	assert_false(c.nics[1].has_mac);
	assert_int_equal(devopt_net(d, &c, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "--net: tap 'tap0' given twice");
	assert_int_equal(devopt_net(e, &c, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "--net 'mac=06:00:00:00:00:01': tap=NAME is required");
	assert_int_equal(devopt_net(f, &c, msg, sizeof(msg)), -1); /* multicast */
	assert_int_equal(devopt_net(g, &c, msg, sizeof(msg)), -1); /* 16 bytes: IFNAMSIZ */
	assert_int_equal(devopt_net(h, &c, msg, sizeof(msg)), -1);
	assert_int_equal(devopt_net(i, &c, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "--net: duplicate interface id 'net1'");
	assert_int_equal(c.nr_nics, 2);
}

static void vsock_and_balloon(void **state)
{
	(void)state;
	struct vm_config c = {0};
	char v1[] = "cid=2,uds=/tmp/v.sock", v2[] = "uds=/tmp/v.sock", v3[] = "cid=3,uds=/tmp/v.sock",
	     v4[] = "cid=4,uds=/tmp/w.sock";
	assert_int_equal(devopt_vsock(v1, &c, msg, sizeof(msg)), -1); /* 2 is the host */
	assert_int_equal(devopt_vsock(v2, &c, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "--vsock 'uds=/tmp/v.sock': expected cid=N,uds=PATH");
	assert_false(c.vsock.enabled);
	assert_int_equal(devopt_vsock(v3, &c, msg, sizeof(msg)), 0);
	assert_true(c.vsock.enabled);
	assert_int_equal(c.vsock.cid, 3);
	assert_string_equal(c.vsock.uds_path, "/tmp/v.sock");
	assert_int_equal(devopt_vsock(v4, &c, msg, sizeof(msg)), -1);

	char b1[] = "64,deflate-on-oom,stats=5", b2[] = "-1", b3[] = "8,stats=x";
	assert_int_equal(devopt_balloon(b2, &c, msg, sizeof(msg)), -1);
	assert_int_equal(devopt_balloon(b3, &c, msg, sizeof(msg)), -1);
	assert_false(c.balloon.enabled);
	assert_int_equal(devopt_balloon(b1, &c, msg, sizeof(msg)), 0);
	assert_true(c.balloon.enabled);
	assert_int_equal(c.balloon.target_mib, 64);
	assert_true(c.balloon.deflate_on_oom);
	assert_int_equal(c.balloon.stats_interval_s, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(disks),
		cmocka_unit_test(disk_errors),
		cmocka_unit_test(nets),
		cmocka_unit_test(vsock_and_balloon),
	};
	return cmocka_run_group_tests_name("devopts", tests, NULL, NULL);
}
