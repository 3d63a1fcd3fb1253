/*
 * cfloor is the "C floor" of ronly's startup: what a supervisor written in
 * C, with no Go runtime before the command, would cost. It drives ronly's
 * own C init with the records the Go floor sends (tools/bench/gofloor
 * writes them, GOFLOOR_RECORDS), answers it as ronly does (the id maps, the
 * seccomp listener taken with pidfd_getfd, then closed) and waits for the
 * command. It does nothing else: no policy, no cgroup, no relay, no
 * notification answered. tools/bench runs it beside the Go floor; the
 * difference is what the Go runtime before the command costs.
 *
 * Usage: cfloor INIT RECORDS
 * INIT is a binary that links ronly's C init (the Go floor's), RECORDS the
 * records it is sent, the command's argv and environment among them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init/records.h"

static void die(const char *what)
{
	fprintf(stderr, "cfloor: %s: %s\n", what, strerror(errno));
	exit(RONLY_EXIT_RONLY);
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die(path);
	char *buf = malloc(st.st_size);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);
		if (n <= 0)
			die(path);
		got += n;
	}
	close(fd);
	*len = got;
	return buf;
}

static void write_all(int fd, const void *p, size_t len)
{
	const char *b = p;
	while (len > 0) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write to the init");
		b += n;
		len -= n;
	}
}

static void send_msg(int fd, uint32_t type)
{
	struct ronly_msg m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	write_all(fd, &m, sizeof(m));
}

/* recv_msg reads one whole message and the sender's pid, which
 * SO_PASSCRED attaches to it. */
static void recv_msg(int fd, struct ronly_msg *m, pid_t *sender)
{
	size_t got = 0;
	while (got < sizeof(*m)) {
		char control[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = {(char *)m + got, sizeof(*m) - got};
		struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
		ssize_t n = recvmsg(fd, &h, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPIPE;
			die("read from the init");
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred cred;
				memcpy(&cred, CMSG_DATA(c), sizeof(cred));
				*sender = cred.pid;
			}
		}
		got += n;
	}
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: cfloor INIT RECORDS\n");
		return 2;
	}
	size_t len;
	char *records = slurp(argv[2], &len);
	int sv[2], reports[2], one = 1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	/* Each message then names its sender: the listener's descriptor is
	 * the sender's. */
	if (setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		die("SO_PASSCRED");
	if (pipe2(reports, O_CLOEXEC) < 0)
		die("pipe2");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The init's socket on 3 and the shims' report pipe on 4, as
		 * the records say; dup2 clears close-on-exec. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(sv[1], 3) < 0 || dup2(reports[1], 4) < 0)
			_exit(RONLY_EXIT_RONLY);
		char *init_argv[] = {"gofloor", NULL};
		char *init_env[] = {RONLY_ENV_INIT_FD "=3", NULL};
		execve(argv[1], init_argv, init_env);
		_exit(RONLY_EXIT_RONLY);
	}
	close(sv[1]);
	close(reports[1]);
	write_all(sv[0], records, len);
	int listener = -1;
	for (int ready = 0; !ready;) {
		struct ronly_msg m;
		pid_t sender = 0;
		char path[64];
		recv_msg(sv[0], &m, &sender);
		switch (m.type) {
		case RONLY_MSG_NEED_IDMAP:
			snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
			write_file(path, "0 0 4294967295\n");
			snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
			write_file(path, "0 0 4294967295\n");
			send_msg(sv[0], RONLY_MSG_IDMAP_DONE);
			break;
		case RONLY_MSG_LISTENER: {
			int pidfd = syscall(SYS_pidfd_open, sender, 0);
			if (pidfd < 0)
				die("pidfd_open");
			listener = syscall(SYS_pidfd_getfd, pidfd, m.value, 0);
			if (listener < 0)
				die("pidfd_getfd");
			close(pidfd);
			send_msg(sv[0], RONLY_MSG_LISTENER_TAKEN);
			break;
		}
		case RONLY_MSG_READY:
			ready = 1;
			break;
		case RONLY_MSG_WARN:
			break;
		default:
			m.step[sizeof(m.step) - 1] = m.detail[sizeof(m.detail) - 1] = 0;
			fprintf(stderr, "cfloor: init: message %u: %s %s: %s\n", m.type, m.step, m.detail, strerror(m.err));
			kill(pid, SIGKILL);
			return RONLY_EXIT_RONLY;
		}
	}
	/* Nothing answers the listener: closed, a refused call fails with
	 * ENOSYS instead of waiting for ever (/bin/true makes none). */
	if (listener >= 0)
		close(listener);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
