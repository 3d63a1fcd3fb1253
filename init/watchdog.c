/*
 * The supervisor's watchdog, forked before the Go runtime.
 *
 * A session's supervisor kills what the session left running and removes
 * its cgroup when the command ends. A supervisor that dies first (SIGKILL,
 * the OOM killer, a crash) leaves the session running with nobody
 * enforcing its limits (--timeout above all), answering its seccomp
 * notifications or counting its refusals: in the debug profile, which
 * makes no PID namespace, its processes live on, still confined, until the
 * next session's start sweeps dead sessions' cgroups (cgroup.Sweep),
 * however long that is.
 *
 * So when the command line asks for a limit, this constructor forks a
 * watchdog while ronly is still one thread: a child that holds the read
 * end of a pipe whose write end only the supervisor holds (close-on-exec:
 * neither the init, nor the command, nor a helper gets it). The supervisor
 * writes RONLY_WATCHDOG_DISMISS once it has cleaned up and reaps the
 * watchdog, which is in a session of its own meanwhile. EOF without it
 * means the supervisor is gone: the watchdog waits until it has been
 * reparented (the kernel has then dropped the supervisor's cgroup locks)
 * and execs ronly again, with the supervisor's arguments and only
 * RONLY_ENV_SWEEP in its environment. That ronly runs cgroup.Sweep: every
 * cgroup of a dead supervisor is killed and removed, this one's among
 * them, and each such session is reported lost where the supervisor's
 * flags would have sent its counts (ronly_sessions_total{result="lost"}).
 *
 * Only then, because the fork is not free on every VM: on the PVM guest CI
 * uses, a fork and exit cost about 0.5 ms, and a watchdog for every session
 * made `ronly -- true` 4-7% slower. Without a limit the session's leftovers
 * are confined and swept at the next start, as before. Nothing happens in
 * the invited init, in the sweep itself, inside a session (nested ronly,
 * shims), for a binary not named ronly* (a shim called by its tool's name
 * outside a session), or with a standard descriptor closed (the pipe would
 * take its number).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "counter_early.h"
#include "records.h"
#include "watchdog.h"

/* For the Go side to take (watchdog.go): pid 0 when none was forked. */
int ronly_watchdog_pid;
int ronly_watchdog_fd = -1; /* the pipe's write end */

#define EXE_FD 3 /* this binary, to exec the sweep from even if the file was replaced */

/* ronly_wants_watchdog says whether the words ahead of "--" ask for
 * something only a live supervisor enforces: a limit (--timeout,
 * --cpu-time, --memory, --pids), or a --policy file, which may set one. A
 * wrong guess costs a fork, or leaves leftovers to the next session's
 * sweep, as without this file. */
int ronly_wants_watchdog(int argc, char **argv)
{
	static const char *const flags[] = {"--timeout", "--cpu-time", "--memory", "--pids", "--policy"};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
			size_t n = strlen(flags[f]);
			if (strncmp(argv[i], flags[f], n) == 0 && (argv[i][n] == 0 || argv[i][n] == '='))
				return 1;
		}
	}
	return 0;
}

/* The watchdog does little but block in read(2) until the supervisor
 * dismisses it or dies, so that a session pays little more than the fork. */
static void __attribute__((noreturn)) watch(int rd, int wr, int exe, pid_t supervisor, char **argv)
{
	close(wr); /* else its EOF would never come */
	/* A session of its own: neither the terminal's ^C and hangup nor a
	 * kill of the caller's process group, which may well be what killed
	 * the supervisor, reaches it. */
	setsid();
	prctl(PR_SET_NAME, "ronly-watchdog", 0, 0, 0);
	char c;
	ssize_t n;
	while ((n = read(rd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1 && c == RONLY_WATCHDOG_DISMISS)
		_exit(0);
	/* Nothing the supervisor had open: the caller may be waiting for
	 * its stdout to close. */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || dup2(exe, EXE_FD) < 0)
		_exit(RONLY_EXIT_RONLY);
	syscall(SYS_close_range, EXE_FD + 1, ~0U, 0);
	/* The supervisor closes its descriptors while it exits, the pipe
	 * and its cgroup locks in any order: once it is reparented away
	 * it has released them all. */
	for (int i = 0; i < 2000 && getppid() == supervisor; i++)
		usleep(1000);
	/* The supervisor's own command line: the sweep reports the sessions
	 * it finds where this one would have reported its own. */
	char *envp[] = {RONLY_ENV_SWEEP "=1", NULL};
	syscall(SYS_execveat, EXE_FD, "", argv, envp, AT_EMPTY_PATH);
	_exit(RONLY_EXIT_RONLY);
}

/* Before the other constructors (a lower priority runs first): the write
 * counter's helper, started by counter_early.c, must not have its pipes
 * held open here. */
__attribute__((constructor(200))) static void ronly_watchdog(int argc, char **argv)
{
	if (argc < 1 || getenv(RONLY_ENV_INIT_FD) || getenv(RONLY_ENV_SWEEP) || getenv(RONLY_ENV_SHIM_REPORT) ||
	    !ronly_wants_watchdog(argc, argv))
		return;
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strncmp(base, "ronly", 5) != 0)
		return;
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			return;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	int exe = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	if (exe < 0)
		goto close_pipe;
	pid_t supervisor = getpid();
	pid_t pid = fork();
	if (pid == 0)
		watch(p[0], p[1], exe, supervisor, argv);
	close(exe);
	if (pid < 0)
		goto close_pipe;
	close(p[0]);
	ronly_watchdog_pid = pid;
	ronly_watchdog_fd = p[1];
	return;
close_pipe:
	close(p[0]);
	close(p[1]);
}
