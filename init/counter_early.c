/*
 * The write counter's helper, started before the Go runtime.
 *
 * `ronly --count-writes` needs ronly-writewatch, a second Go program, to
 * load and attach its eBPF programs before the command may run. Started
 * from Go, at the top of main, its start overlaps ronly's planning but not
 * ronly's own runtime start and package init, and on a 2-core VM it is the
 * longest step of a counting session. So when the command line plainly
 * asks for counting, this constructor starts the helper at once, on three
 * pipes, and leaves it to the Go side (counter_early.go) to adopt.
 *
 * This is a guess made before any flag is parsed: the Go side decides, with
 * the flags as kong reads them, whether the session counts and with which
 * programs, and ends a helper it cannot use. A wrong guess costs time, never
 * a count: the helper only attaches programs and answers on its pipes.
 *
 * Where the kernel cannot run fexit programs, a session that only counts
 * needs no helper: the supervisor holds the shared sys_exit program itself
 * (go/sandbox's sharedHere). Then only a command line that also asks for
 * events (--audit-log) starts one here.
 *
 * Nothing happens in the invited init (it builds a sandbox), in a
 * watchdog's sweep (watchdog.c: it runs with a dead supervisor's
 * arguments), inside a session (no CAP_BPF there), for anyone but root,
 * or when the helper is not installed beside ronly or on PATH (the Go
 * side then says so).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "counter_early.h"
#include "records.h"
#include "watchdog.h"

extern char **environ;

/* The helper, for the Go side to take: pid 0 when none was started. */
int ronly_early_counter_pid;
int ronly_early_counter_events;
int ronly_early_counter_fds[3] = {-1, -1, -1}; /* its stdin, stdout, stderr: ronly's ends */

/* ronly_asks_counting guesses the Go side's countsWrites from the words ahead of
 * "--" or of the first word that is not a flag: 1 when --count-writes is
 * among them, with *events set when --audit-log is too. A flag's value
 * given as a separate word ends the scan early: no guess, Go starts the
 * helper as it would without this file. */
int ronly_asks_counting(int argc, char **argv, int *events)
{
	int asked = 0, saw_run = 0;
	*events = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "run") == 0 && !saw_run) {
			saw_run = 1; /* run's flags may follow it */
			continue;
		}
		if (a[0] != '-') {
			/* Another command's name (main.go's isCommandName): no
			 * session, so nothing to count. Else the command, or a
			 * flag's value: the guess ends here. */
			if (strcmp(a, "probe") == 0 || strcmp(a, "probe-internal") == 0 || strcmp(a, "sweep") == 0 ||
			    strcmp(a, "help") == 0)
				return 0;
			break;
		}
		if (strcmp(a, "--count-writes") == 0 || strcmp(a, "--count-writes=true") == 0)
			asked = 1;
		else if (strncmp(a, "--count-writes=", 15) == 0 || strcmp(a, "--no-write-counting") == 0 ||
			 strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "--version") == 0)
			return 0;
		else if (strncmp(a, "--audit-log", 11) == 0)
			*events = 1;
	}
	return asked;
}

/* find_helper puts the helper's path in buf: beside this executable, else
 * on PATH, as remote.Find looks. */
static int find_helper(char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			if ((size_t)snprintf(buf, size, "%s/%s", self, RONLY_WRITEWATCH) < size && access(buf, X_OK) == 0)
				return 0;
		}
	}
	const char *path = getenv("PATH");
	while (path && *path) {
		const char *end = strchrnul(path, ':');
		int len = (int)(end - path);
		if (len > 0 && (size_t)snprintf(buf, size, "%.*s/%s", len, path, RONLY_WRITEWATCH) < size && access(buf, X_OK) == 0)
			return 0;
		path = *end ? end + 1 : end;
	}
	return -1;
}

/* fexit_possible answers as rawtp.FexitPossible does (for root): a tracing
 * program that names no function is refused with EINVAL where the kernel
 * may load tracing programs, with EPERM where it may not; without the
 * kernel's BTF there is no fexit. */
static int fexit_possible(void)
{
	if (access("/sys/kernel/btf/vmlinux", F_OK) != 0)
		return 0;
	struct bpf_insn insns[2] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.prog_type = BPF_PROG_TYPE_TRACING;
	attr.expected_attach_type = BPF_TRACE_FEXIT;
	attr.insns = (unsigned long)insns;
	attr.insn_cnt = 2;
	attr.license = (unsigned long)"GPL";
	memcpy(attr.prog_name, "ronly_probe", sizeof "ronly_probe");
	int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	return errno != EPERM;
}

__attribute__((constructor)) static void ronly_counter_early(int argc, char **argv, char **envp)
{
	int events;
	if (getenv(RONLY_ENV_INIT_FD) || getenv(RONLY_ENV_SHIM_REPORT) || getenv(RONLY_ENV_SWEEP) || geteuid() != 0 ||
	    !ronly_asks_counting(argc, argv, &events) || (!events && !fexit_possible()))
		return;
	/* With a standard descriptor closed, a pipe would take its number and
	 * ronly would write its output into the helper: leave it to Go. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			return;
	char bin[PATH_MAX];
	if (find_helper(bin, sizeof bin) < 0)
		return;
	int in[2], out[2], err[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return;
	if (pipe2(out, O_CLOEXEC) < 0)
		goto close_in;
	if (pipe2(err, O_CLOEXEC) < 0)
		goto close_out;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawnattr_init(&attr);
	/* Its own process group, as remote.Start gives it: a ^C at the
	 * terminal is for the sandboxed command, and the counts must still
	 * be collected after it. */
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
	char *args[] = {bin, events ? "--events" : NULL, NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, bin, &fa, &attr, args, envp ? envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		close(err[0]);
		return;
	}
	ronly_early_counter_pid = pid;
	ronly_early_counter_events = events;
	ronly_early_counter_fds[0] = in[1];
	ronly_early_counter_fds[1] = out[0];
	ronly_early_counter_fds[2] = err[0];
	return;
close_out:
	close(out[0]);
	close(out[1]);
close_in:
	close(in[0]);
	close(in[1]);
}
