/* Names watchdog.c shares with the Go side (watchdog.go). */
#ifndef RONLY_WATCHDOG_H
#define RONLY_WATCHDOG_H

#define RONLY_ENV_SWEEP "_RONLY_SWEEP" /* set by a watchdog whose supervisor died: ronly sweeps, then exits */
#define RONLY_WATCHDOG_DISMISS 'D'     /* the supervisor's last byte to its watchdog: it cleaned up */

extern int ronly_watchdog_pid;
extern int ronly_watchdog_fd;

int ronly_wants_watchdog(int argc, char **argv);

#endif
