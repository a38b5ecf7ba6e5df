#include "util/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static enum log_level g_level = LOG_WARN;
static FILE *g_out; /* NULL: stderr */

int log_open(const char *path)
{
	FILE *f = fopen(path, "ae");
	if (!f)
		return -1;
	setvbuf(f, NULL, _IOLBF, 0);
	FILE *old = g_out;
	g_out = f;
	if (old)
		fclose(old);
	return 0;
}

void log_set_level(enum log_level l) { g_level = l; }
enum log_level log_get_level(void) { return g_level; }

int log_parse_level(const char *s, enum log_level *out)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warn") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return -1;
}

/* Messages quote what users and guests sent: a control byte in it must not end
 * the line (and forge the next one) or drive the terminal. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	static const char *const tag[] = {"error", "warning", "info", "debug"};
	if (l > g_level)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sanitize(buf);
	/* One write per line so lines from vCPU threads do not interleave. */
	fprintf(g_out ? g_out : stderr, "kite: %s: %s\n", tag[l], buf);
}

int err_set(struct kite_err *e, int code, const char *fmt, ...)
{
	if (!e || e->code)
		return -1;
	e->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	sanitize(e->msg);
	return -1;
}
