/* `kite stat`: reads GET /stats from running kite VMs and shows it. */
#ifndef KITE_STATCLI_H
#define KITE_STATCLI_H

/* argv[0] is "stat". Returns the process exit code. */
int stat_main(int argc, char **argv);

#endif
