/* Names counter_early.c shares with the Go side (counter_early.go). */
#ifndef RONLY_COUNTER_EARLY_H
#define RONLY_COUNTER_EARLY_H

#define RONLY_WRITEWATCH "ronly-writewatch"     /* the helper's file name: remote.Binary */
#define RONLY_ENV_SHIM_REPORT "RONLY_REPORT_FD" /* set inside a session: shims.EnvReportFD */

extern int ronly_early_counter_pid;
extern int ronly_early_counter_events;
extern int ronly_early_counter_fds[3];

int ronly_asks_counting(int argc, char **argv, int *events);

#endif
