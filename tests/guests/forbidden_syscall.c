/* The seccomp test hook: asks kite (through the test device) to make a system
 * call its filter forbids, then reports DONE. With the filter kite never gets
 * to DONE: SIGSYS, one line, exit 148. */
#include "guest.h"

int main(void)
{
	ucall(UCALL_FORBIDDEN_SYSCALL, __FILE__, __LINE__, "", 0, 0);
	return 0;
}
