/* Device options of `kite run`: --disk, --net, --vsock, --balloon. Each parser
 * splits its (writable) argument in place, so the strings it stores point into
 * it and live as long as argv. On error: -1 and one line in msg naming what was
 * wrong; the config is left as it was. */
#ifndef KITE_DEVOPTS_H
#define KITE_DEVOPTS_H

#include <stddef.h>

#include "vmm/vm.h"

/* PATH[,ro][,id=NAME][,serial=S]  (or path=PATH as the first item) */
int devopt_disk(char *arg, struct vm_config *cfg, char *msg, size_t len);
/* tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,id=NAME] */
int devopt_net(char *arg, struct vm_config *cfg, char *msg, size_t len);
/* cid=N,uds=PATH */
int devopt_vsock(char *arg, struct vm_config *cfg, char *msg, size_t len);
/* MiB[,deflate-on-oom][,stats=SECONDS] */
int devopt_balloon(char *arg, struct vm_config *cfg, char *msg, size_t len);
/* --vcpu-affinity CPU[,CPU]...: host CPUs that exist and this process may use. */
int devopt_affinity(const char *arg, struct vm_config *cfg, char *msg, size_t len);
/* --vcpu-sched other[:NICE]|batch[:NICE]|idle|fifo:PRIO|rr:PRIO */
int devopt_sched(const char *arg, struct vm_config *cfg, char *msg, size_t len);
/* Parses a MAC address "06:00:ac:10:00:02". 0 or -1. */
int parse_mac(const char *s, uint8_t mac[6]);

#endif
