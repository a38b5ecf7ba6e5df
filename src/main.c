/* Command line -> one vm_config. Nothing else lives here. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "arch/x86/template.h"
#include "gdb/gdb.h"
#include "jailer/jailer.h"
#include "snapshot/snapshot.h"
#include "stats/statcli.h"
#include "util/devopts.h"
#include "util/log.h"
#include "vmm/machine.h"

#ifndef KITE_VERSION
#define KITE_VERSION "0.0.0"
#endif

#define DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"
#define DEFAULT_API_SOCK "/run/kite.socket"
#define MAX_MEM_MIB (1024u * 1024u) /* 1 TiB */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kite --version\n"
		"       kite [--api-sock PATH] [--config-file FILE [--no-api]] [--id ID] [--boot-timer]\n"
		"            [--level LEVEL] [--log-path PATH] [--metrics-path PATH]\n"
		"            [--no-seccomp | --seccomp-filter FILE]\n"
		"       kite run --kernel PATH [--initrd PATH] [--cmdline \"...\"] [--cpus N]\n"
		"                [--mem MiB] [--serial stdio|none|PATH] [--boot-timer]\n"
		"                [--level error|warning|info|debug] [--test-device]\n"
		"                [--disk PATH[,ro][,id=NAME][,serial=S]]... [--net tap=NAME[,mac=MAC][,id=NAME]]...\n"
		"                [--vsock cid=N,uds=PATH] [--rng] [--balloon MiB[,deflate-on-oom][,stats=S]]\n"
		"                [--stats-file PATH] [--no-exit-stats] [--no-seccomp | --seccomp-filter FILE]\n"
		"                [--huge-pages none|2M|thp] [--ksm] [--vcpu-affinity CPU[,CPU]...]\n"
		"                [--vcpu-sched other[:NICE]|batch[:NICE]|idle|fifo:PRIO|rr:PRIO]\n"
		"                [--cpu-template FILE] [--gdb tcp:HOST:PORT|unix:PATH]\n"
		"       kite stat --api-sock PATH [--api-sock PATH]... [--interval S] [--count N]\n"
		"                 [--format text|json|prometheus]\n"
		"       kite cpu-template dump|intersect|check ... (see 'kite cpu-template --help')\n"
		"       kite jail --id ID --exec-file PATH --uid UID --gid GID [OPTIONS] [-- KITE ARGS]\n"
		"       kite snapshot-fold BASE_MEM DIFF_MEM\n"
		"\n"
		"The first form is Firecracker's: an HTTP API on a Unix socket (default\n"
		DEFAULT_API_SOCK ") and/or a JSON --config-file. `kite run` boots directly.\n"
		"Boots a Linux microVM (bzImage or vmlinux ELF) on /dev/kvm. Defaults: 1 vCPU,\n"
		"128 MiB, cmdline \"" DEFAULT_CMDLINE "\", serial on stdio.\n"
		"Exit codes: 0 guest rebooted/powered off, 1 runtime error, 2 bad usage,\n"
		"3 KVM unavailable, 4 bad kernel/initrd, 5 guest crashed the vCPU (KVM internal\n"
		"error or unhandled exit), 6 a test guest's assertion failed, 128+N stopped\n"
		"by signal N.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "kite: error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see 'kite --help')\n");
	return KITE_EXIT_USAGE;
}

/* --level, shared by both command lines. */
static int set_level(const char *arg)
{
	enum log_level l;
	if (log_parse_level(arg, &l) < 0) {
		usage_error("--level '%s': expected error, warning, info or debug", arg);
		return -1;
	}
	log_set_level(l);
	return 0;
}

/* Strict decimal: digits only, no sign, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	errno = 0;
	unsigned long long v = strtoull(s, NULL, 10);
	if (errno)
		return -1;
	*out = v;
	return 0;
}

/* --no-seccomp (path NULL) or --seccomp-filter PATH; one of them at most. */
static int seccomp_opt(struct seccomp_opts *o, const char *path)
{
	if (o->mode != SECCOMP_DEFAULT) {
		usage_error("%s", "--no-seccomp and --seccomp-filter: give at most one, once");
		return -1;
	}
	if (!path) {
		o->mode = SECCOMP_OFF;
		return 0;
	}
	struct kite_err err = {0};
	if (seccomp_check_file(path, &err) < 0) {
		usage_error("%s", err.msg);
		return -1;
	}
	o->mode = SECCOMP_FILE;
	o->file = path;
	return 0;
}

static int cmd_run(int argc, char **argv, struct vm_config *cfg)
{
	enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEM, OPT_SERIAL,
	       OPT_BOOT_TIMER, OPT_TEST_DEVICE, OPT_LEVEL, OPT_HELP, OPT_DISK, OPT_NET, OPT_VSOCK,
	       OPT_RNG, OPT_BALLOON, OPT_STATS_FILE, OPT_NO_EXIT_STATS, OPT_NO_SECCOMP, OPT_SECCOMP_FILTER,
	       OPT_HUGE_PAGES, OPT_KSM, OPT_CPU_TEMPLATE, OPT_VCPU_AFFINITY, OPT_VCPU_SCHED, OPT_GDB };
	static const struct option opts[] = {
		{"kernel", required_argument, NULL, OPT_KERNEL},
		{"initrd", required_argument, NULL, OPT_INITRD},
		{"cmdline", required_argument, NULL, OPT_CMDLINE},
		{"cpus", required_argument, NULL, OPT_CPUS},
		{"mem", required_argument, NULL, OPT_MEM},
		{"serial", required_argument, NULL, OPT_SERIAL},
		{"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
		{"test-device", no_argument, NULL, OPT_TEST_DEVICE},
		{"level", required_argument, NULL, OPT_LEVEL},
		{"help", no_argument, NULL, OPT_HELP},
		{"disk", required_argument, NULL, OPT_DISK},
		{"net", required_argument, NULL, OPT_NET},
		{"vsock", required_argument, NULL, OPT_VSOCK},
		{"rng", no_argument, NULL, OPT_RNG},
		{"balloon", required_argument, NULL, OPT_BALLOON},
		{"stats-file", required_argument, NULL, OPT_STATS_FILE},
		{"no-exit-stats", no_argument, NULL, OPT_NO_EXIT_STATS},
		{"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
		{"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
		{"huge-pages", required_argument, NULL, OPT_HUGE_PAGES},
		{"ksm", no_argument, NULL, OPT_KSM},
		{"vcpu-affinity", required_argument, NULL, OPT_VCPU_AFFINITY},
		{"vcpu-sched", required_argument, NULL, OPT_VCPU_SCHED},
		{"cpu-template", required_argument, NULL, OPT_CPU_TEMPLATE},
		{"gdb", required_argument, NULL, OPT_GDB},
		{NULL, 0, NULL, 0},
	};
	opterr = 0;
	optind = 1;
	int c;
	uint64_t v;
	char msg[256];
	/* Leading ':' tells a missing value (':') from an unknown option ('?'). */
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			cfg->kernel = optarg;
			break;
		case OPT_INITRD:
			cfg->initrd = optarg;
			break;
		case OPT_CMDLINE:
			cfg->cmdline = optarg;
			break;
		case OPT_CPUS:
			if (parse_u64(optarg, &v) < 0 || v == 0 || v > UINT_MAX)
				return usage_error("--cpus '%s': expected a vCPU count of at least 1", optarg);
			cfg->cpus = (unsigned)v;
			break;
		case OPT_MEM:
			if (parse_u64(optarg, &v) < 0 || v < 2 || v > MAX_MEM_MIB)
				return usage_error("--mem '%s': expected MiB between 2 and 1048576", optarg);
			cfg->mem_mib = v;
			break;
		case OPT_SERIAL:
			if (strcmp(optarg, "stdio") == 0) {
				cfg->serial = SERIAL_STDIO;
			} else if (strcmp(optarg, "none") == 0) {
				cfg->serial = SERIAL_NONE;
			} else if (*optarg) {
				cfg->serial = SERIAL_FILE;
				cfg->serial_path = optarg;
			} else {
				return usage_error("--serial '%s': expected stdio, none or a file path", optarg);
			}
			break;
		case OPT_BOOT_TIMER:
			cfg->boot_timer = true;
			break;
		case OPT_TEST_DEVICE:
			cfg->test_device = true;
			break;
		case OPT_LEVEL:
			if (set_level(optarg) < 0)
				return KITE_EXIT_USAGE;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		case OPT_DISK:
			if (devopt_disk(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_NET:
			if (devopt_net(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_VSOCK:
			if (devopt_vsock(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_RNG:
			cfg->rng = true;
			break;
		case OPT_STATS_FILE:
			if (!*optarg)
				return usage_error("--stats-file '%s': expected a file path", optarg);
			cfg->stats_path = optarg;
			break;
		case OPT_NO_EXIT_STATS:
			cfg->no_exit_stats = true;
			break;
		case OPT_NO_SECCOMP:
		case OPT_SECCOMP_FILTER:
			if (seccomp_opt(&cfg->seccomp, c == OPT_NO_SECCOMP ? NULL : optarg) < 0)
				return KITE_EXIT_USAGE;
			break;
		case OPT_HUGE_PAGES:
			if (strcmp(optarg, "none") == 0)
				cfg->huge_pages = GMEM_ANON;
			else if (strcmp(optarg, "2M") == 0)
				cfg->huge_pages = GMEM_HUGETLB;
			else if (strcmp(optarg, "thp") == 0)
				cfg->huge_pages = GMEM_THP;
			else
				return usage_error("--huge-pages '%s': expected none, 2M or thp", optarg);
			break;
		case OPT_KSM:
			cfg->ksm = true;
			break;
		case OPT_VCPU_AFFINITY:
			if (devopt_affinity(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_VCPU_SCHED:
			if (devopt_sched(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_CPU_TEMPLATE:
			template_free(cfg->cpu_template);
			if (!(cfg->cpu_template = template_load(optarg, msg, sizeof(msg))))
				return usage_error("--cpu-template %s", msg);
			break;
		case OPT_BALLOON:
			if (devopt_balloon(optarg, cfg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			break;
		case OPT_GDB:
			if (gdb_addr_check(optarg, msg, sizeof(msg)) < 0)
				return usage_error("%s", msg);
			cfg->gdb = optarg;
			break;
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default: {
			/* A known long option given a value it does not take sets optopt to
			 * its code; anything else is unknown. */
			char name[64];
			snprintf(name, sizeof(name), "%s", argv[optind - 1]);
			name[strcspn(name, "=")] = 0;
			if (optopt >= OPT_KERNEL)
				return usage_error("option '%s' does not take a value", name);
			if (optopt > 0) /* a short option, maybe inside a cluster like -xyz */
				snprintf(name, sizeof(name), "-%c", optopt);
			return usage_error("unknown option '%s'", name);
		}
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!cfg->kernel)
		return usage_error("%s", "--kernel is required");
	if (cfg->huge_pages == GMEM_HUGETLB && cfg->mem_mib % 2)
		return usage_error("%s", "--huge-pages 2M needs --mem in whole 2 MiB pages (an even number of MiB)");
	return 0;
}

/* Firecracker's command line: an API socket and/or a --config-file. */
static int cmd_firecracker(int argc, char **argv, struct timespec exec_time)
{
	enum { OPT_API_SOCK = 256, OPT_CONFIG_FILE, OPT_NO_API, OPT_ID, OPT_BOOT_TIMER, OPT_LEVEL,
	       OPT_LOG_PATH, OPT_METRICS_PATH, OPT_NO_SECCOMP, OPT_SECCOMP_FILTER };
	static const struct option opts[] = {
		{"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
		{"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
		{"api-sock", required_argument, NULL, OPT_API_SOCK},
		{"config-file", required_argument, NULL, OPT_CONFIG_FILE},
		{"no-api", no_argument, NULL, OPT_NO_API},
		{"id", required_argument, NULL, OPT_ID},
		{"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
		{"level", required_argument, NULL, OPT_LEVEL},
		{"log-path", required_argument, NULL, OPT_LOG_PATH},
		{"metrics-path", required_argument, NULL, OPT_METRICS_PATH},
		{NULL, 0, NULL, 0},
	};
	struct api_opts o = {.api_sock = DEFAULT_API_SOCK, .exec_time = exec_time};
	bool no_api = false;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK:
			o.api_sock = optarg;
			break;
		case OPT_CONFIG_FILE:
			o.config_file = optarg;
			break;
		case OPT_NO_API:
			no_api = true;
			break;
		case OPT_ID:
			if (!*optarg || strlen(optarg) > 64)
				return usage_error("--id '%s': expected 1 to 64 characters", optarg);
			o.id = optarg;
			break;
		case OPT_BOOT_TIMER:
			o.boot_timer = true;
			break;
		case OPT_LEVEL:
			if (set_level(optarg) < 0)
				return KITE_EXIT_USAGE;
			break;
		case OPT_LOG_PATH:
			if (log_open(optarg) < 0) {
				fprintf(stderr, "kite: error: --log-path '%s': %s\n", optarg, strerror(errno));
				return KITE_EXIT_USAGE;
			}
			break;
		case OPT_METRICS_PATH:
			o.metrics_path = optarg;
			break;
		case OPT_NO_SECCOMP:
		case OPT_SECCOMP_FILTER:
			if (seccomp_opt(&o.seccomp, c == OPT_NO_SECCOMP ? NULL : optarg) < 0)
				return KITE_EXIT_USAGE;
			break;
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (no_api) {
		if (!o.config_file)
			return usage_error("%s", "--no-api needs --config-file: nothing else could start the microVM");
		o.api_sock = NULL;
	}
	return api_main(&o);
}

int main(int argc, char **argv)
{
	struct vm_config cfg = {
		.cmdline = DEFAULT_CMDLINE,
		.cpus = 1,
		.mem_mib = 128,
		.serial = SERIAL_STDIO,
	};
	clock_gettime(CLOCK_MONOTONIC, &cfg.exec_time);

	if (argc < 2) {
		usage(stderr);
		return KITE_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("kite v%s\n", KITE_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "run") == 0) {
		int r = cmd_run(argc - 1, argv + 1, &cfg);
		if (r)
			return r;
		return machine_run(&cfg);
	}
	if (strcmp(argv[1], "cpu-template") == 0)
		return template_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "stat") == 0)
		return stat_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "jail") == 0)
		return jail_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "snapshot-fold") == 0)
		return snapshot_fold_main(argc - 1, argv + 1);
	if (argv[1][0] == '-')
		return cmd_firecracker(argc, argv, cfg.exec_time);
	return usage_error("unknown command '%s'", argv[1]);
}
