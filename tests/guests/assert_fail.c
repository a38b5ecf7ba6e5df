/* A failing GUEST_ASSERT_EQ: kite must exit 6 and name this file and line. */
#include "guest.h"

int main(void)
{
	volatile uint64_t two = 2;
	guest_print("assert-fail: about to fail");
	GUEST_ASSERT_EQ(two, 3); /* ASSERT-LINE */
	guest_print("assert-fail: still running after the failed assertion");
	return 0;
}
