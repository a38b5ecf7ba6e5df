/* Live migration's address parsing (mig_parse_addr): numeric IPv4 and IPv6 with a
 * port, nothing that would need a name lookup, and one clear error for every
 * malformed form. The stream itself is tested end to end in
 * tests/integration/test_migration.py. */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "migration/migrate.h"

static void ipv4_and_ipv6(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	unsigned len;
	struct kite_err err = {0};
	assert_int_equal(mig_parse_addr("10.0.0.2:7000", &ss, &len, &err), 0);
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(in->sin_port), 7000);
	assert_int_equal(ntohl(in->sin_addr.s_addr), 0x0a000002);
	assert_int_equal(mig_parse_addr("[::1]:65535", &ss, &len, &err), 0);
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 65535);
	assert_true(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
	assert_int_equal(mig_parse_addr("[fe80::1:2]:1", &ss, &len, &err), 0);
}

static void refusals(void **state)
{
	(void)state;
	static const struct {
		const char *in, *needle;
	} bad[] = {
		{"localhost:80", "not a numeric"},  /* a name: no lookups */
		{"10.0.0.2", "ADDRESS:PORT"},       /* no port */
		{"10.0.0.2:", "port must be"},
		{"10.0.0.2:0", "port must be"},
		{"10.0.0.2:65536", "port must be"},
		{"10.0.0.2:80x", "port must be"},
		{"10.0.0.2:-1", "port must be"},
		{"::1:80", "ADDRESS:PORT"},         /* IPv6 without brackets */
		{"[::1]80", "[IPv6]:PORT"},
		{"[::1", "[IPv6]:PORT"},
		{"[nope]:80", "not a numeric"},
		{":80", "not a numeric"},
		{"1.2.3.4.5:80", "not a numeric"},
		{"", "ADDRESS:PORT"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		unsigned len;
		struct kite_err err = {0};
		assert_int_equal(mig_parse_addr(bad[i].in, &ss, &len, &err), -1);
		assert_int_equal(err.code, KITE_EXIT_USAGE);
		if (!strstr(err.msg, bad[i].needle))
			fail_msg("'%s': '%s' does not say '%s'", bad[i].in, err.msg, bad[i].needle);
	}
	/* A long host part is refused, not truncated into another address. */
	char longhost[200];
	memset(longhost, '1', sizeof(longhost));
	memcpy(longhost + sizeof(longhost) - 4, ":80", 4);
	struct sockaddr_storage ss;
	unsigned len;
	struct kite_err err = {0};
	assert_int_equal(mig_parse_addr(longhost, &ss, &len, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ipv4_and_ipv6),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
