/* Logging and the process exit codes kite documents (see README "Exit codes"). */
#ifndef KITE_LOG_H
#define KITE_LOG_H

#include <stdarg.h>

enum kite_exit {
	KITE_EXIT_OK = 0,         /* guest rebooted or powered off */
	KITE_EXIT_ERROR = 1,      /* runtime failure not covered below */
	KITE_EXIT_USAGE = 2,      /* bad command line */
	KITE_EXIT_KVM = 3,        /* /dev/kvm missing, not permitted or unusable */
	KITE_EXIT_IMAGE = 4,      /* kernel/initrd missing, unreadable, malformed, too large */
	KITE_EXIT_GUEST = 5,      /* KVM internal error or unhandled exit */
	KITE_EXIT_GUEST_TEST = 6, /* a test guest reported a failed assertion */
};

enum log_level { LOG_OFF = -1, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level l);
/* Sends log lines to a file or FIFO (appending) instead of stderr. */
int log_open(const char *path);
enum log_level log_get_level(void);
int log_parse_level(const char *s, enum log_level *out);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_get_level() >= LOG_DEBUG)                              \
			log_msg(LOG_DEBUG, __VA_ARGS__);                       \
	} while (0)

/* An error carried back to the caller: a message and the exit code it maps to. */
struct kite_err {
	int code;
	char msg[512];
};

/* Records the first error only; later calls keep the root cause. Returns -1. */
int err_set(struct kite_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
