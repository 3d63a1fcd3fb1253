/*
 * ronly's init: the part of sandbox setup that needs a single-threaded
 * process. unshare(CLONE_NEWUSER) fails with EINVAL once a process has more
 * than one thread, and the Go runtime starts threads before main, so this
 * runs as an ELF constructor, before the Go runtime. It does nothing unless
 * the supervisor invited it by naming an inherited socket in _RONLY_INIT_FD.
 *
 * The steps, in the order the kernel needs them:
 *   read_config      fixed-size records and a BPF program from the socket
 *   enter_userns     unshare(CLONE_NEWUSER); the parent writes our id maps
 *   enter_namespaces mount, IPC, UTS [, network] namespaces
 *   enter_pidns      [optional] a PID namespace: fork, the child is its PID 1
 *   open_userns_limits [userns] open /proc/sys/user/max_* of the new user ns
 *   build_root       recursive read-only clone of /, scratch mounts, a
 *                    private /dev
 *   enter_root       pivot_root into it and drop the old root
 *   own_terminal     [optional] a pty of its own on stdio; else no controlling terminal
 *   limit_userns     [userns] the session's share of inotify, fanotify and
 *                    namespaces: its user namespace's /proc/sys/user limits
 *   drop_privileges  capabilities, securebits, no_new_privs
 *   restrict_fs      Landlock: writes only where writable; signals scoped
 *   close_fds        nothing inherited by accident reaches the command
 *   load_seccomp     last, because it forbids the calls the steps above use;
 *                    the supervisor takes the listener out of this process
 *   [pidns] fork once more: PID 1 stays here forwarding signals and reaping
 *   exec_command     the command, looked up on the PATH the supervisor
 *                    computed, in place of this process: no Go runtime
 *                    starts between the sandbox and the command
 * (without a command in the records, as in the seam's tests, it returns
 * and the Go runtime starts inside the sandbox instead).
 *
 * Any failure is sent to the supervisor as one ronly_msg (step, detail,
 * errno) and the process exits 125; the supervisor prints it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <malloc.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "records.h"

/* Read by the Go side: 1 once this process is inside a finished sandbox. */
int ronly_init_ran;

/* The holder is a tmpfs over the host's /tmp in our private mount namespace;
 * the new root is assembled under it and /tmp is replaced by scratch anyway. */
#define HOLDER "/tmp"
#define NEWROOT HOLDER "/root"

static int sock = -1;
static struct ronly_header hdr;
static struct ronly_mount *mounts;
static struct sock_filter *bpf, *fallback;
static char **cmd_argv, **cmd_env; /* NULL-terminated; cmd_argv NULL: no command */

static void send_msg_flags(uint32_t type, int err, int value, uint32_t flags, const char *step, const char *detail, int pass_fd)
{
	struct ronly_msg m;
	memset(&m, 0, sizeof m);
	m.type = type;
	m.err = err;
	m.value = value;
	m.flags = flags;
	snprintf(m.step, sizeof m.step, "%s", step ? step : "");
	snprintf(m.detail, sizeof m.detail, "%s", detail ? detail : "");

	struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (pass_fd >= 0) {
		memset(&control, 0, sizeof control);
		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof control.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	/* Without a descriptor, send(): once the seccomp filter is loaded,
	 * sendmsg goes to the supervisor, which is not answering yet. */
	if (pass_fd < 0) {
		while (send(sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
			;
		return;
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void send_msg(uint32_t type, int err, int value, const char *step, const char *detail, int pass_fd)
{
	send_msg_flags(type, err, value, 0, step, detail, pass_fd);
}

static void __attribute__((noreturn)) die(const char *step, const char *detail)
{
	send_msg(RONLY_MSG_ERROR, errno, 0, step, detail, -1);
	_exit(RONLY_EXIT_RONLY);
}

static void read_full(void *buf, size_t n, const char *what)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(sock, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EPIPE;
			die("read records", what);
		}
		p += r;
		n -= (size_t)r;
	}
}

/* NEWROOT + host path, or die: a silently truncated path would mount elsewhere. */
static const char *in_root(const char *path)
{
	static char buf[sizeof NEWROOT + RONLY_PATH_MAX];
	if ((size_t)snprintf(buf, sizeof buf, "%s%s", NEWROOT, path) >= sizeof buf) {
		errno = ENAMETOOLONG;
		die("path", path);
	}
	return buf;
}

static void set_attr(int dfd, const char *path, unsigned int at_flags, uint64_t set, const char *step)
{
	struct mount_attr a;
	memset(&a, 0, sizeof a);
	a.attr_set = set;
	if (syscall(SYS_mount_setattr, dfd, path, at_flags, &a, sizeof a) < 0)
		die(step, path);
}

static char **read_strings(uint32_t len, const char *what);

static void read_config(void)
{
	read_full(&hdr, sizeof hdr, "header");
	if (hdr.magic != RONLY_MAGIC || hdr.version != RONLY_RECORDS_VERSION) {
		errno = EPROTO;
		die("read records", "record version mismatch between supervisor and init");
	}
	const size_t max = BPF_MAXINSNS * sizeof(struct sock_filter);
	if (hdr.n_mounts > RONLY_MAX_MOUNTS || hdr.bpf_len % sizeof(struct sock_filter) || hdr.bpf_len > max ||
	    hdr.fallback_len % sizeof(struct sock_filter) || hdr.fallback_len > max) {
		errno = E2BIG;
		die("read records", "mount count or BPF length out of range");
	}
	mounts = calloc(hdr.n_mounts + 1, sizeof *mounts);
	bpf = malloc(hdr.bpf_len + 1);
	fallback = malloc(hdr.fallback_len + 1);
	if (!mounts || !bpf || !fallback)
		die("read records", "allocation");
	read_full(mounts, hdr.n_mounts * sizeof *mounts, "mounts");
	for (uint32_t i = 0; i < hdr.n_mounts; i++) {
		mounts[i].path[RONLY_PATH_MAX - 1] = 0;
		mounts[i].source[RONLY_PATH_MAX - 1] = 0;
		if (mounts[i].path[0] != '/') {
			errno = EINVAL;
			die("read records", "mount path is not absolute");
		}
	}
	read_full(bpf, hdr.bpf_len, "bpf");
	read_full(fallback, hdr.fallback_len, "fallback bpf");
	cmd_argv = read_strings(hdr.argv_len, "argv");
	cmd_env = read_strings(hdr.env_len, "environment");
	if (hdr.argv_len && !cmd_env)
		cmd_env = calloc(1, sizeof *cmd_env);
}

/* NUL-terminated strings, len bytes in all, as a NULL-terminated array;
 * NULL for none. */
static char **read_strings(uint32_t len, const char *what)
{
	if (len == 0)
		return NULL;
	if (len > RONLY_MAX_EXEC_BYTES) {
		errno = E2BIG;
		die("read records", what);
	}
	char *b = malloc(len);
	if (!b)
		die("read records", "allocation");
	read_full(b, len, what);
	if (b[len - 1] != 0) {
		errno = EINVAL;
		die("read records", what);
	}
	size_t n = 0;
	for (uint32_t i = 0; i < len; i++)
		n += b[i] == 0;
	char **v = calloc(n + 1, sizeof *v);
	if (!v)
		die("read records", "allocation");
	for (size_t i = 0, off = 0; i < n; i++) {
		v[i] = b + off;
		off += strlen(b + off) + 1;
	}
	return v;
}

static void enter_userns(void)
{
	if (unshare(CLONE_NEWUSER) < 0)
		die("unshare(CLONE_NEWUSER)", "");
	/* Only a process outside may write a full identity map for us. */
	send_msg(RONLY_MSG_NEED_IDMAP, 0, 0, "", "", -1);
	struct ronly_msg m;
	read_full(&m, sizeof m, "id map answer");
	if (m.type != RONLY_MSG_IDMAP_DONE || m.err) {
		errno = m.err ? m.err : EPROTO;
		m.detail[sizeof m.detail - 1] = 0;
		die("write id maps", m.detail);
	}
}

/*
 * The session's share of the kernel objects its user shares with the host.
 * Inside the new user namespace /proc/sys/user/ holds that namespace's own
 * limits (the kernel starts them at INT_MAX); what the session creates is
 * charged there and to its user on the host, so a limit here keeps the
 * rest of the host's for the host (inotify instances and watches, fanotify
 * groups and marks). The supervisor chose the values (namespaces: 0, as
 * seccomp already refuses new ones).
 *
 * Two steps. open_userns_limits opens the files while /proc is still the
 * host's procfs, writable; limit_userns writes them once the root is built:
 * after the last namespace the init itself makes (a limit is checked when
 * something is created, and build_root's open_tree clones count as mount
 * namespaces on recent kernels) and while the init still has
 * CAP_SYS_RESOURCE in the namespace, which the writes need.
 */
static int userns_limit_fd[RONLY_MAX_USERNS_LIMITS];

static void open_userns_limits(void)
{
	for (uint32_t i = 0; i < RONLY_MAX_USERNS_LIMITS; i++) {
		struct ronly_userns_limit *l = &hdr.userns_limits[i];
		l->name[sizeof l->name - 1] = 0;
		userns_limit_fd[i] = -1;
		if (!l->name[0])
			continue;
		if (strchr(l->name, '/') || l->name[0] == '.') {
			errno = EINVAL;
			die("read records", "user namespace limit is not a file name");
		}
		char path[64];
		snprintf(path, sizeof path, "/proc/sys/user/%s", l->name);
		if ((userns_limit_fd[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
			send_msg(RONLY_MSG_WARN, errno, 0, "user namespace limit", l->name, -1);
	}
}

static void limit_userns(void)
{
	for (uint32_t i = 0; i < RONLY_MAX_USERNS_LIMITS; i++) {
		if (userns_limit_fd[i] < 0)
			continue;
		struct ronly_userns_limit *l = &hdr.userns_limits[i];
		char value[24];
		int n = snprintf(value, sizeof value, "%llu", (unsigned long long)l->value);
		if (write(userns_limit_fd[i], value, (size_t)n) != n)
			send_msg(RONLY_MSG_WARN, errno, 0, "user namespace limit", l->name, -1);
		close(userns_limit_fd[i]);
		userns_limit_fd[i] = -1;
	}
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		die("bring up lo", "SIOCGIFFLAGS");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		die("bring up lo", "SIOCSIFFLAGS");
	close(s);
}

static void enter_namespaces(void)
{
	int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
	if (hdr.flags & RONLY_F_NETNS)
		flags |= CLONE_NEWNET;
	if (unshare(flags) < 0)
		die("unshare", (hdr.flags & RONLY_F_NETNS) ? "mount, IPC, UTS and network namespaces" : "mount, IPC and UTS namespaces");
	if (hdr.flags & RONLY_F_NETNS)
		loopback_up();
}

/* Exit as the child did: its code, or 128+N for signal N, the shell's way. */
static void __attribute__((noreturn)) exit_like(int status)
{
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static pid_t forward_to = -1;
static void forward_signal(int sig) { kill(forward_to, sig); }

/*
 * A new PID namespace applies to children only, so fork: the child becomes
 * its PID 1 and goes on building the sandbox; this process stays outside
 * and only relays the supervisor's signals and the exit status.
 */
static void enter_pidns(void)
{
	if (unshare(CLONE_NEWPID) < 0)
		die("unshare(CLONE_NEWPID)", "");
	pid_t child = fork();
	if (child < 0)
		die("fork", "PID 1 of the new PID namespace");
	if (child == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			die("prctl(PR_SET_PDEATHSIG)", "");
		return;
	}
	close(sock);
	forward_to = child;
	signal(SIGTERM, forward_signal);
	signal(SIGHUP, forward_signal);
	signal(SIGINT, SIG_IGN); /* the terminal sends Ctrl-C to the command itself */
	signal(SIGQUIT, SIG_IGN);
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			_exit(RONLY_EXIT_RONLY);
	exit_like(status);
}

/*
 * PID 1 of the namespace, after the sandbox is sealed. PID 1 ignores every
 * signal it has no handler for, even Ctrl-C's SIGINT, so the command must
 * not be PID 1: it runs as PID 2, PID 1 passes signals on to it, reaps
 * orphans, and leaves with the command's status (which kills the rest of
 * the namespace).
 */
static void become_pid1(void)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	pid_t cmd = fork();
	if (cmd < 0)
		die("fork", "the command under PID 1");
	if (cmd == 0) {
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		return;
	}
	close(sock);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			/* The terminal already sent its signals (SI_KERNEL) to
			 * the whole foreground group, the command included. */
			if (si.si_code != SI_KERNEL)
				kill(cmd, sig);
			continue;
		}
		int status;
		pid_t p;
		while ((p = waitpid(-1, &status, WNOHANG)) > 0)
			if (p == cmd)
				exit_like(status);
	}
}

/* This binary, opened O_PATH in our mount namespace for the shims. */
static int self_fd = -1;

/*
 * /proc/self/exe names a mount of the namespace we left, which cannot be
 * bound here: open the same file by its path in ours, after checking it is
 * still the same file, before anything covers that path.
 */
static void open_self(void)
{
	char exe[RONLY_PATH_MAX];
	struct stat a, b;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n < 0)
		die("readlink", "/proc/self/exe");
	exe[n] = 0;
	self_fd = open(exe, O_PATH | O_CLOEXEC);
	if (self_fd < 0)
		die("open", exe);
	if (stat("/proc/self/exe", &a) < 0 || fstat(self_fd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		errno = ESTALE;
		die("shims: the ronly binary moved or was replaced", exe);
	}
}

static void make_node(const char *path, mode_t mode, int dir)
{
	int r = dir ? mkdir(path, mode) : open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
	if (r < 0)
		die(dir ? "mkdir" : "create", path);
	if (!dir)
		close(r);
}

/* Whether mounts[i] lies inside an empty tmpfs an earlier record made (a
 * --writable or the ci HOME inside /tmp or another such place: the Go plan
 * orders a place after those that hold it), and not inside a --rw bound
 * on top of that, which is the host's directory. */
static int inside_fresh(uint32_t i)
{
	int fresh = 0;
	for (uint32_t j = 0; j < i; j++) {
		size_t n = strlen(mounts[j].path);
		if ((mounts[j].kind == RONLY_M_TMPFS || mounts[j].kind == RONLY_M_BIND_RW) &&
		    strncmp(mounts[i].path, mounts[j].path, n) == 0 && mounts[i].path[n] == '/')
			fresh = mounts[j].kind == RONLY_M_TMPFS;
	}
	return fresh;
}

/* mkdir -p: each missing component of path, 0755. */
static void make_path(const char *path)
{
	char buf[RONLY_PATH_MAX];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			die("mkdir", buf);
		*p = c;
		if (c == '\0')
			return;
	}
}

/*
 * A private /dev: only harmless character devices, each a read-only bind of
 * the host's node (writing *to* the device still works, but touch or chmod
 * on it no longer reaches the host's inode), a fresh devpts, shm and mqueue.
 * Device nodes ignore a read-only mount, so the host's disks must simply not
 * be here.
 */
static void build_dev(void)
{
	static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
	static const char dev[] = NEWROOT "/dev";
	char p[sizeof dev + 64], host[64];

	if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
		die("mount tmpfs", "/dev");
	for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) {
		snprintf(host, sizeof host, "/dev/%s", devices[i]);
		snprintf(p, sizeof p, "%s/%s", dev, devices[i]);
		if (access(host, F_OK) < 0)
			continue; /* a host without /dev/tty (no controlling terminal) */
		make_node(p, 0, 0);
		if (mount(host, p, NULL, MS_BIND, NULL) < 0)
			die("bind device", host);
		set_attr(AT_FDCWD, p, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, "read-only device");
	}
	static const char *const dirs[] = {"pts", "shm", "mqueue"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dev, dirs[i]);
		make_node(p, 0755, 1);
	}
	snprintf(p, sizeof p, "%s/pts", dev);
	if (mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
		die("mount devpts", "/dev/pts");
	snprintf(p, sizeof p, "%s/shm", dev);
	if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		die("mount tmpfs", "/dev/shm");
	snprintf(p, sizeof p, "%s/mqueue", dev);
	if (mount("mqueue", p, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount mqueue", "/dev/mqueue");

	static const char *const links[][2] = {
	    {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
	    {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	};
	for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
		snprintf(p, sizeof p, "%s/%s", dev, links[i][1]);
		if (symlink(links[i][0], p) < 0)
			die("symlink", p);
	}
	/* The command shims: this very binary under each tool's name, in a
	 * directory the command cannot change, put first on PATH inside. The
	 * binary was opened before the holder covered /tmp (open_self), so a
	 * ronly that lives under /tmp works too. */
	int have_shims = 0;
	for (uint32_t i = 0; i < hdr.n_mounts; i++) {
		const struct ronly_mount *m = &mounts[i];
		if (m->kind != RONLY_M_SHIM)
			continue;
		if (!have_shims++) {
			snprintf(p, sizeof p, "%s/ronly-shims", dev);
			make_node(p, 0755, 1);
		}
		if (strchr(m->path + 1, '/') || !m->path[1] || strlen(m->path) > 24) {
			errno = EINVAL;
			die("shim name", m->path);
		}
		char self[64];
		snprintf(self, sizeof self, "/proc/self/fd/%d", self_fd);
		snprintf(p, sizeof p, "%s/ronly-shims%s", dev, m->path);
		make_node(p, 0755, 0);
		if (mount(self, p, NULL, MS_BIND, NULL) < 0)
			die("bind shim", m->path);
		set_attr(AT_FDCWD, p, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, "read-only shim");
	}
	if (self_fd >= 0)
		close(self_fd);
	/* Nothing new can be created in /dev itself; its submounts stay as made. */
	set_attr(AT_FDCWD, dev, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, "read-only /dev");
}

/*
 * openat2 with RESOLVE_NO_SYMLINKS: a symlink anywhere in path (relative to
 * dirfd) fails with ELOOP instead of being followed.
 */
static int open_no_symlinks(int dirfd, const char *path, int flags)
{
	struct open_how how;
	memset(&how, 0, sizeof how);
	how.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC);
	how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/*
 * RONLY_M_BIND_RO: path, inside a writable bind made by an earlier record,
 * bound read-only onto itself (a repository's .git/hooks or .git/config in
 * the workspace). It is opened from the new root without following any
 * symlink, and from there everything goes through descriptors: the clone
 * is made read-only while still detached and then attached onto the very
 * inode that was opened, so the path is never resolved twice and the bind
 * is never writable, not even for a moment. A path that is gone or became
 * a symlink since the supervisor planned it stops the session.
 * RONLY_M_PIN (writable set) is the same bind left writable: only a mount
 * point, so that the path cannot be renamed, removed or replaced inside
 * (the kernel refuses that with EBUSY in this mount namespace).
 */
static void bind_ro(int rootfd, const char *path, int writable)
{
	int fd = open_no_symlinks(rootfd, path + 1, O_PATH);
	if (fd < 0)
		die("open read-only bind (no symlinks)", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat", path);
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		errno = EINVAL;
		die("read-only bind: not a directory or regular file", path);
	}
	int tree = (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (tree < 0)
		die("open_tree(OPEN_TREE_CLONE)", path);
	set_attr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, (writable ? 0 : MOUNT_ATTR_RDONLY) | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
	         writable ? "pin" : "read-only bind");
	if (syscall(SYS_move_mount, tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount read-only bind", path);
	close(tree);
	close(fd);
}

/*
 * The host file a record names (a --rw directory, the Docker guard's
 * socket), opened in our copy of the host's mount tree without following a
 * symlink in any component, and checked to be the very file the supervisor
 * looked at (dev, ino): a path swapped for a symlink, or for another file,
 * since the supervisor checked it stops the session instead of binding
 * whatever the path leads to now.
 */
static int open_checked(const struct ronly_mount *m, const char *path, int flags, mode_t type, const char *step)
{
	int fd = open_no_symlinks(AT_FDCWD, path, O_PATH | flags);
	if (fd < 0 && errno == ENOSYS)
		die("openat2", "ronly needs Linux 5.6 or newer to open paths without following symlinks");
	if (fd < 0)
		die(step, path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat", path);
	if ((st.st_mode & S_IFMT) != type || st.st_dev != m->dev || st.st_ino != m->ino) {
		errno = ESTALE;
		die("replaced since ronly checked it", path);
	}
	return fd;
}

/*
 * Bind the file or tree held open as src onto the one held open as dst,
 * with attrs set while the clone is still detached: neither end is looked
 * up by path again, so nothing swapped in since can redirect the bind, and
 * the bind never exists without its attributes.
 */
static void bind_fds(int src, int dst, unsigned int recursive, uint64_t attrs, const char *what)
{
	int tree = (int)syscall(SYS_open_tree, src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | recursive);
	if (tree < 0)
		die("open_tree(OPEN_TREE_CLONE)", what);
	struct mount_attr a;
	memset(&a, 0, sizeof a);
	a.attr_set = attrs;
	if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | recursive, &a, sizeof a) < 0)
		die("mount_setattr", what);
	if (syscall(SYS_move_mount, tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount", what);
	close(tree);
}

/* The sources of RONLY_M_BIND_RW records, by record;
 * -1 for others. restrict_fs takes the --rw directories' Landlock rules
 * from these descriptors, not from their paths. */
static int *source_fd;

/*
 * RONLY_F_NO_NS: nothing is mounted, so a writable directory is only a
 * Landlock rule. Each is opened as build_root opens a --rw source (no
 * symlinks, the very directory the supervisor checked), and restrict_fs
 * takes its rule from the descriptor.
 */
static void hold_writable_dirs(void)
{
	source_fd = calloc(hdr.n_mounts + 1, sizeof *source_fd);
	if (!source_fd)
		die("allocation", "");
	for (uint32_t i = 0; i < hdr.n_mounts; i++) {
		if (mounts[i].kind != RONLY_M_BIND_RW) {
			errno = EINVAL;
			die("read records", "only writable directories can be had without a mount namespace");
		}
		source_fd[i] = open_checked(&mounts[i], mounts[i].path, O_DIRECTORY, S_IFDIR, "open writable (no symlinks)");
	}
}

/*
 * Credentials (go/sandbox/creds.go): an empty file in the holder, made
 * once, mode 0444. It is bound over each RONLY_M_HIDE file; after
 * pivot_root the holder is gone and only those read-only binds reach it.
 */
static int empty_fd = -1;

static int empty_file(void)
{
	if (empty_fd >= 0)
		return empty_fd;
	empty_fd = open(HOLDER "/.ronly-empty", O_CREAT | O_EXCL | O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (empty_fd < 0 || fchmod(empty_fd, 0444) < 0)
		die("create empty file", HOLDER "/.ronly-empty");
	return empty_fd;
}

/* RONLY_M_HIDE: path, found from the new root without following a
 * symlink (the supervisor resolved them), reads empty. What is at the path
 * now is what gets covered, whatever the supervisor saw. */
static void hide_file(int rootfd, const char *path)
{
	int dst = open_no_symlinks(rootfd, path + 1, O_PATH);
	if (dst < 0)
		die("open credential to hide (no symlinks)", path);
	struct stat st;
	if (fstat(dst, &st) < 0)
		die("fstat", path);
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		die("hide credential: not a regular file", path);
	}
	bind_fds(empty_file(), dst, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, path);
	close(dst);
}

/*
 * RONLY_M_HIDE_DIR at mounts[i]: a small tmpfs, filled in the holder with
 * what the RONLY_M_SHOW records after it name (a host file bound
 * read-only, or an empty file), made read-only with its binds while
 * detached, and attached over the directory as a whole. Kubelet replaces a
 * projected token by removing the old file, which would drop a bind on it;
 * the directory itself stays, and so does this cover.
 */
static void hide_dir(int rootfd, uint32_t i)
{
	static const char at[] = HOLDER "/.ronly-hide";
	const struct ronly_mount *m = &mounts[i];
	int dst = open_no_symlinks(rootfd, m->path + 1, O_PATH | O_DIRECTORY);
	if (dst < 0)
		die("open token directory to hide (no symlinks)", m->path);
	if (mkdir(at, 0700) < 0 && errno != EEXIST)
		die("mkdir", at);
	char opts[64];
	snprintf(opts, sizeof opts, "size=64k,nr_inodes=128,mode=%o", m->mode & 0777);
	if (mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
		die("mount tmpfs", at);
	int dir = open(at, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		die("open", at);
	size_t n = strlen(m->path);
	for (uint32_t j = i + 1; j < hdr.n_mounts && mounts[j].kind == RONLY_M_SHOW; j++) {
		const struct ronly_mount *s = &mounts[j];
		const char *name = s->path + n + 1;
		if (strncmp(s->path, m->path, n) != 0 || s->path[n] != '/' || !*name || strchr(name, '/') ||
		    !strcmp(name, ".") || !strcmp(name, "..")) {
			errno = EINVAL;
			die("read records", "a shown name outside its hidden directory");
		}
		int f = openat(dir, name, O_CREAT | O_EXCL | O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
		if (f < 0 || fchmod(f, 0444) < 0)
			die("create", s->path);
		if (source_fd[j] >= 0)
			bind_fds(source_fd[j], f, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, s->path);
		close(f);
	}
	int tree = (int)syscall(SYS_open_tree, dir, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (tree < 0)
		die("open_tree(OPEN_TREE_CLONE)", m->path);
	set_attr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
	         "read-only token directory");
	if (syscall(SYS_move_mount, tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount over token directory", m->path);
	close(tree);
	close(dir);
	close(dst);
	if (umount2(at, MNT_DETACH) < 0)
		die("umount", at);
}

/* RONLY_M_SHOW's source: a regular host file, opened like a --rw source
 * (no symlinks) before anything covers it. */
static int open_shown(const struct ronly_mount *m)
{
	int fd = open_no_symlinks(AT_FDCWD, m->source, O_PATH);
	if (fd < 0)
		die("open file to show (no symlinks)", m->source);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat", m->source);
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		die("file to show: not a regular file", m->source);
	}
	return fd;
}

static void build_root(void)
{
	/* Private, not slave: with slave propagation, mounts the host makes
	 * later (Docker's new container layers under /var/lib/docker) would
	 * appear in here writable; with shared, ours would appear on the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make mounts private", "/");

	/* Clone the whole tree before the holder covers /tmp, and make every
	 * mount in it read-only in one recursive call: a plain
	 * MS_REMOUNT|MS_RDONLY of / is not recursive and leaves /dev/shm,
	 * /sys/fs/cgroup, /proc/sys, a separate /home... writable. */
	int tree = (int)syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		die("open_tree(OPEN_TREE_CLONE)", "/");
	set_attr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE,
	         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, "mount_setattr(AT_RECURSIVE, RDONLY)");

	/* Sources under the host's /tmp vanish behind the holder: hold them
	 * open from here on and bind them through their descriptors. */
	source_fd = calloc(hdr.n_mounts + 1, sizeof *source_fd);
	if (!source_fd)
		die("allocation", "");
	for (uint32_t i = 0; i < hdr.n_mounts; i++) {
		source_fd[i] = -1;
		if (mounts[i].kind == RONLY_M_BIND_RW)
			source_fd[i] = open_checked(&mounts[i], mounts[i].path, O_DIRECTORY, S_IFDIR, "open writable (no symlinks)");
		else if (mounts[i].kind == RONLY_M_SHOW && mounts[i].source[0])
			source_fd[i] = open_shown(&mounts[i]);
	}

	for (uint32_t i = 0; i < hdr.n_mounts; i++)
		if (mounts[i].kind == RONLY_M_SHIM && self_fd < 0)
			open_self();

	if (access(HOLDER, F_OK) < 0)
		die("holder", "the host has no " HOLDER " directory to assemble the root on");
	if (mount("tmpfs", HOLDER, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=1m") < 0)
		die("mount tmpfs", HOLDER);
	make_node(NEWROOT, 0755, 1);
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, NEWROOT, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount", NEWROOT);
	close(tree);

	int rootfd = -1; /* NEWROOT, for RONLY_M_BIND_RO */
	for (uint32_t i = 0; i < hdr.n_mounts; i++) {
		const struct ronly_mount *m = &mounts[i];
		const char *target = in_root(m->path);
		struct stat st;
		char opts[64];
		int dst;

		switch (m->kind) {
		case RONLY_M_SHIM:
			break; /* in build_dev */
		case RONLY_M_TMPFS: {
			/* Mounted on the directory opened without following
			 * symlinks: a --writable path swapped for a symlink since
			 * the supervisor resolved it stops the session rather
			 * than covering what the symlink names. */
			char at[32];
			/* Inside an empty tmpfs made above the place does not
			 * exist yet: make it there, and nowhere else (anywhere
			 * else the supervisor found the directory on the host). */
			if (lstat(target, &st) < 0 && errno == ENOENT && inside_fresh(i))
				make_path(target);
			if ((dst = open_no_symlinks(AT_FDCWD, target, O_PATH | O_DIRECTORY)) < 0)
				die("open tmpfs's place (no symlinks)", m->path);
			snprintf(at, sizeof at, "/proc/self/fd/%d", dst);
			snprintf(opts, sizeof opts, "size=%llu,mode=%o", (unsigned long long)m->size, m->mode & 07777);
			if (mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
				die("mount tmpfs", m->path);
			close(dst);
			break;
		}
		case RONLY_M_BIND_RW:
			/* The source is the host's own directory, opened above in
			 * the original tree, where it is writable (and visible even
			 * under /tmp); the target is in the clone.
			 * Under a tmpfs made above (a workspace or cache inside a
			 * fresh $HOME) the target does not exist yet: make it. On
			 * the read-only clone that fails, as it must. */
			if (lstat(target, &st) < 0 && errno == ENOENT)
				make_path(target);
			/* The target, too, is opened without following symlinks:
			 * the clone shows the host's files live, so a path swapped
			 * after the source was opened would move the bind. */
			if ((dst = open_no_symlinks(AT_FDCWD, target, O_PATH | O_DIRECTORY)) < 0)
				die("open writable's place (no symlinks)", m->path);
			bind_fds(source_fd[i], dst, AT_RECURSIVE, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, m->path);
			close(dst);
			break;
		case RONLY_M_BIND_RO:
		case RONLY_M_PIN:
			if (rootfd < 0 && (rootfd = open(NEWROOT, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
				die("open", NEWROOT);
			bind_ro(rootfd, m->path, m->kind == RONLY_M_PIN);
			break;
		case RONLY_M_HIDE:
		case RONLY_M_HIDE_DIR:
			if (rootfd < 0 && (rootfd = open(NEWROOT, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
				die("open", NEWROOT);
			if (m->kind == RONLY_M_HIDE)
				hide_file(rootfd, m->path);
			else
				hide_dir(rootfd, i);
			break;
		case RONLY_M_SHOW:
			break; /* in the RONLY_M_HIDE_DIR before it */
		default:
			errno = EINVAL;
			die("read records", "unknown mount kind");
		}
	}
	if (rootfd >= 0)
		close(rootfd);
	if (empty_fd >= 0)
		close(empty_fd);
	if (hdr.flags & RONLY_F_PIDNS) {
		/* Our own /proc: the host's would describe another PID
		 * namespace, so getpid() and /proc/self would disagree. */
		/* Read-only like the host's in the debug profile: nothing under
		 * /proc is the session's to change (oom_score_adj, /proc/sys). */
		if (mount("proc", in_root("/proc"), "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
			die("mount proc", "/proc");
	}
	for (uint32_t i = 0; i < hdr.n_mounts; i++)
		if (source_fd[i] >= 0 && mounts[i].kind != RONLY_M_BIND_RW) {
			close(source_fd[i]);
			source_fd[i] = -1;
		}
	build_dev();
}

static void enter_root(void)
{
	char cwd[RONLY_PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		strcpy(cwd, "/");
	if (chdir(NEWROOT) < 0)
		die("chdir", NEWROOT);
	/* pivot_root(".", ".") stacks the old root on the new one; detaching
	 * "." then drops the old root, holder and all, without a put_old
	 * directory (which a read-only root could not hold). */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root", NEWROOT);
	if (umount2(".", MNT_DETACH) < 0)
		die("detach old root", "/");
	if (chdir("/") < 0)
		die("chdir", "/");
	/* The caller's working directory may not be there inside (under /tmp
	 * or another place that starts empty): the command starts in /, and
	 * the caller is told. */
	if (chdir(cwd) < 0)
		send_msg(RONLY_MSG_WARN, errno, 0, "working directory", cwd, -1);
}

/*
 * fds 0-2 are the supervisor's pipes, never the caller's files or terminal:
 * reopening /proc/self/fd/0 would reach the host's writable mount, and
 * fchmod, futimens, fsetxattr and TIOCSETD need no reopen at all. A caller
 * at a terminal gets a pty of the sandbox's own devpts (build_dev) as the
 * controlling terminal of a new session, its master handed to the
 * supervisor, which relays it to the caller's terminal (as runc does for
 * `docker run -t`); so `tty` names it and a chmod or TIOCSETD of it stays
 * in here. Without one, the command must not keep the caller's terminal as
 * its controlling one either, or /dev/tty would reach it; it stays in the
 * caller's session and process group, so Ctrl-C and Ctrl-Z still reach it.
 * After pivot_root, where /dev/pts is ours; before Landlock and seccomp.
 */
static void own_terminal(void)
{
	if (!(hdr.flags & RONLY_F_PTY)) {
		int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (tty < 0)
			return; /* no controlling terminal (ENXIO), or no /dev/tty */
		/* Never as a session leader: that would hang up the caller's
		 * foreground jobs. A child of the supervisor is not one. */
		if (getsid(0) != getpid() && ioctl(tty, TIOCNOTTY) < 0)
			die("ioctl(TIOCNOTTY)", "the caller's terminal");
		close(tty);
		return;
	}
	/* Without a mount namespace this is the host's devpts, whose
	 * pts/ptmx may be mode 0 (ptmxmode=000): /dev/ptmx is the way in. */
	const char *ptmx = (hdr.flags & RONLY_F_NO_NS) ? "/dev/ptmx" : "/dev/pts/ptmx";
	int master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		die("open", ptmx);
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		die("ioctl(TIOCSPTLCK)", "/dev/pts/ptmx");
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		die("ioctl(TIOCGPTPEER)", "/dev/pts/ptmx");
	if (getsid(0) != getpid() && setsid() < 0)
		die("setsid", "");
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		die("ioctl(TIOCSCTTY)", "the session's pty");
	if (dup2(slave, 0) < 0 || ((hdr.flags & RONLY_F_PTY_OUT) && dup2(slave, 1) < 0) ||
	    ((hdr.flags & RONLY_F_PTY_ERR) && dup2(slave, 2) < 0))
		die("dup2", "the session's pty");
	close(slave);
	send_msg(RONLY_MSG_PTY, 0, 0, "", "", master);
	close(master);
}

static void drop_privileges(void)
{
	const int keep = (hdr.flags & RONLY_F_KEEP_DAC_READ) ? CAP_DAC_READ_SEARCH : -1;
	/* The bounding set first: dropping from it needs CAP_SETPCAP. It is
	 * what a later execve as root draws its capabilities from. */
	/* Without a user namespace, a process without CAP_SETPCAP (any user
	 * but root; a container's root without it) can do neither, and needs
	 * neither: no_new_privs below already keeps a later execve from
	 * gaining any capability (the kernel caps it at the permitted set,
	 * which capset empties), setuid root or not. */
	int bounded = 1;
	for (int cap = 0; bounded && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (cap != keep && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno != EPERM || !(hdr.flags & RONLY_F_NO_NS))
				die("drop capability bounding set", "");
			bounded = 0;
		}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		die("clear ambient capabilities", "");
	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NOROOT_LOCKED |
	                                 SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
	          0, 0, 0) < 0 &&
	    (errno != EPERM || !(hdr.flags & RONLY_F_NO_NS)))
		die("lock securebits", "");
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (keep >= 0)
		d[0].effective = d[0].permitted = d[0].inheritable = 1u << keep;
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset", "");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs", "");
}

/* Landlock UAPI, spelled out: the build host's headers may predate ABI 6. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};
struct ll_path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));
#define LL_RULE_PATH_BENEATH 1
#define LL_FS_WRITE_FILE (1ull << 1)
#define LL_FS_ABI1_WRITES 0x1ff2ull /* WRITE_FILE, REMOVE_DIR/FILE, MAKE_CHAR..MAKE_SYM */
#define LL_FS_REFER (1ull << 13)
#define LL_FS_TRUNCATE (1ull << 14)
#define LL_FS_IOCTL_DEV (1ull << 15)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ull << 0)
#define LL_SCOPE_SIGNAL (1ull << 1)

static int add_path_rule(int ruleset, const char *path, uint64_t access)
{
	struct ll_path_beneath pb = {.allowed_access = access};
	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0 && errno == ENOENT && (hdr.flags & RONLY_F_NO_NS))
		return -1; /* a host /dev without that device: no rule needed */
	if (pb.parent_fd < 0)
		die("landlock rule", path);
	int r = (int)syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0);
	int saved = errno;
	close(pb.parent_fd);
	errno = saved;
	return r;
}

/* A rule for the directory held open as fd: Landlock rules are on inodes,
 * so this is the rule the path would give, without looking it up again
 * inside, where the session's own processes could have swapped it. */
static void allow_fd(int ruleset, int fd, uint64_t access, const char *what)
{
	struct ll_path_beneath pb = {.allowed_access = access, .parent_fd = fd};
	if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
		die("landlock_add_rule", what);
}

static void allow_path(int ruleset, const char *path, uint64_t access)
{
	if (add_path_rule(ruleset, path, access) < 0)
		die("landlock_add_rule", path);
}

/*
 * Only write-type rights are handled, so reading stays governed by the
 * read-only mounts and ordinary permissions. Landlock judges the resolved
 * file, so it also refuses writes through /proc/<pid>/root, inherited dirfds
 * and open_by_handle_at, and (ABI 6) signals and abstract sockets that would
 * leave the sandbox.
 */
static void restrict_fs(void)
{
	const uint32_t abi = hdr.landlock_abi;
	if (abi == 0)
		return;
	uint64_t fs = LL_FS_ABI1_WRITES;
	if (abi >= 2)
		fs |= LL_FS_REFER;
	if (abi >= 3)
		fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LL_FS_IOCTL_DEV;
	struct ll_ruleset_attr attr = {.handled_access_fs = fs};
	size_t size = sizeof attr.handled_access_fs;
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
		size = sizeof attr;
	}
	int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (ruleset < 0)
		die("landlock_create_ruleset", "");

	for (uint32_t i = 0; i < hdr.n_mounts; i++)
		if (mounts[i].kind == RONLY_M_TMPFS)
			allow_path(ruleset, mounts[i].path, fs);
		else if (mounts[i].kind == RONLY_M_BIND_RW)
			allow_fd(ruleset, source_fd[i], fs, mounts[i].path);
	/* Writing to null, tty and ptys (and their ioctls) is normal work. */
	const uint64_t file_rights = (LL_FS_WRITE_FILE | LL_FS_TRUNCATE | LL_FS_IOCTL_DEV) & fs;
	if (!(hdr.flags & RONLY_F_NO_NS)) {
		/* Our private /dev: only harmless devices, our own shm. */
		allow_path(ruleset, "/dev/shm", fs);
		allow_path(ruleset, "/dev", file_rights);
	} else {
		/* The host's /dev holds its disks, and root keeps owning them
		 * with every capability dropped: only these devices, one by
		 * one. The session's pty is its stdio, which gets its rule
		 * below; other terminals of the host get none. */
		static const char *const devices[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
		                                      "/dev/tty", "/dev/ptmx"};
		for (size_t i = 0; i < sizeof devices / sizeof *devices; i++)
			if (add_path_rule(ruleset, devices[i], file_rights) < 0 && errno != ENOENT)
				die("landlock_add_rule", devices[i]);
	}
	/* The terminal, pipe or file ronly's caller handed it as stdio lives
	 * outside every rule; without this, `echo x > /dev/stdout` would be
	 * refused although the descriptor itself is writable. */
	for (int fd = 0; fd <= 2; fd++) {
		struct stat st;
		char p[32];
		if (fstat(fd, &st) < 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode)))
			continue;
		snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
		/* EBADFD: an anonymous pipe, on an internal file system that
		 * Landlock neither takes rules for nor restricts. */
		if (add_path_rule(ruleset, p, file_rights) < 0 && errno != EBADFD)
			die("landlock_add_rule", p);
	}
	if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
		die("landlock_restrict_self", "");
	close(ruleset);
}

static void close_fds(void)
{
	/* Inherited descriptors bypass every mount flag: a rw fd to a host
	 * file stays writable. Keep only stdio, our socket and the report fd
	 * (a pipe's write end: all it can reach is the supervisor's counts). */
	unsigned int keep[2] = {(unsigned int)sock, hdr.report_fd > 2 ? hdr.report_fd : (unsigned int)sock};
	if (keep[1] < keep[0]) {
		unsigned int t = keep[0];
		keep[0] = keep[1];
		keep[1] = t;
	}
	unsigned int from = 3;
	for (int i = 0; i < 2; i++) {
		if (keep[i] > from && syscall(SYS_close_range, from, keep[i] - 1, 0) < 0)
			die("close_range", "");
		if (keep[i] + 1 > from)
			from = keep[i] + 1;
	}
	if (syscall(SYS_close_range, from, ~0u, 0) < 0)
		die("close_range", "");
}

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

static int seccomp_filter(unsigned int flags, struct sock_filter *f, uint32_t len)
{
	struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)), .filter = f};
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/*
 * With a listener, each refused call waits for the supervisor, which answers
 * with the errno and counts it; if the supervisor dies the kernel answers
 * ENOSYS and the call still never runs. Killable waits (5.19+) keep a stuck
 * supervisor from making the sandbox unkillable. A second listener in a
 * nested sandbox is refused (EBUSY): then the fallback program answers with
 * plain errnos, uncounted, and the supervisor says so.
 */
/*
 * RONLY_F_LISTENER_HELPER: where pidfd_getfd is refused (Docker's default
 * seccomp profile allows it only with CAP_SYS_PTRACE) the supervisor cannot
 * take the listener out of this process, and once the filter is loaded
 * this process's sendmsg waits for that very supervisor. So a helper is
 * made before the filter, sharing this process's descriptor table
 * (CLONE_FILES) but not its filter: told the listener's number on a pipe,
 * it sends the listener with SCM_RIGHTS and exits. It runs nothing else,
 * and it is reaped before the command starts.
 */
static pid_t listener_helper = -1;
static int helper_pipe[2] = {-1, -1};

static void start_listener_helper(void)
{
	if (pipe2(helper_pipe, O_CLOEXEC) < 0)
		die("pipe2", "seccomp listener helper");
	pid_t h = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (h < 0)
		die("clone(CLONE_FILES)", "seccomp listener helper");
	if (h == 0) {
		int lfd = -1;
		ssize_t r;
		while ((r = read(helper_pipe[0], &lfd, sizeof lfd)) < 0 && errno == EINTR)
			;
		if (r == (ssize_t)sizeof lfd && lfd >= 0)
			send_msg(RONLY_MSG_LISTENER, 0, lfd, "", "", lfd);
		_exit(0);
	}
	listener_helper = h;
}

static void finish_listener_helper(int fd)
{
	while (write(helper_pipe[1], &fd, sizeof fd) < 0 && errno == EINTR)
		;
	int status;
	while (waitpid(listener_helper, &status, 0) < 0 && errno == EINTR)
		;
	close(helper_pipe[0]);
	close(helper_pipe[1]);
	listener_helper = -1;
}

static void load_seccomp(void)
{
	uint32_t ready = 0;
	int fd = -1;
	if ((hdr.flags & RONLY_F_SECCOMP_NOTIFY) && (hdr.flags & RONLY_F_LISTENER_HELPER))
		start_listener_helper();
	if (hdr.flags & RONLY_F_SECCOMP_NOTIFY) {
		fd = seccomp_filter(SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, bpf, hdr.bpf_len);
		if (fd >= 0)
			ready = RONLY_READY_KILLABLE;
		else if (errno == EINVAL)
			fd = seccomp_filter(SECCOMP_FILTER_FLAG_NEW_LISTENER, bpf, hdr.bpf_len);
		if (fd >= 0) {
			ready |= RONLY_READY_LISTENER;
		} else if (errno == EBUSY && hdr.fallback_len > 0) {
			if (seccomp_filter(0, fallback, hdr.fallback_len) < 0)
				die("seccomp(SECCOMP_SET_MODE_FILTER)", "fallback program");
			ready = RONLY_READY_FALLBACK;
		} else {
			die("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)", "");
		}
	} else if (hdr.bpf_len > 0 && seccomp_filter(0, bpf, hdr.bpf_len) < 0) {
		die("seccomp(SECCOMP_SET_MODE_FILTER)", "");
	}
	if (listener_helper > 0)
		finish_listener_helper(fd); /* it sent the listener, or (fd -1) nothing */
	if (fd >= 0) {
		/* sendmsg is mediated now, by the supervisor that is waiting
		 * for this very descriptor: it takes the listener out of this
		 * process itself (pidfd_getfd), and only then is ours closed,
		 * before the command could ever use it. */
		if (!(hdr.flags & RONLY_F_LISTENER_HELPER))
			send_msg(RONLY_MSG_LISTENER, 0, fd, "", "", -1);
		struct ronly_msg m;
		read_full(&m, sizeof m, "listener answer");
		if (m.type != RONLY_MSG_LISTENER_TAKEN || m.err) {
			errno = m.err ? m.err : EPROTO;
			m.detail[sizeof m.detail - 1] = 0;
			die("hand over the seccomp listener", m.detail);
		}
		close(fd);
	}
	send_msg_flags(RONLY_MSG_READY, 0, (int)hdr.landlock_abi, ready, "", "", -1);
}

/*
 * Running the command: what the Go front-end did before the init did it,
 * with the same messages (Go's exec.LookPath and syscall.Exec words) and
 * the shell's exit codes, 126 cannot execute and 127 not found. It runs
 * here, sealed, so the lookup sees the sandbox's own tree; the supervisor
 * already put the shims first on PATH and removed ronly's own variables.
 */
static void __attribute__((noreturn, format(printf, 2, 3))) cannot_run(int code, const char *fmt, ...)
{
	char line[RONLY_PATH_MAX + 512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(2, "ronly: ", 7) == 7 && write(2, line, (size_t)n) < 0) {
		/* nothing left to tell it on */
	}
	_exit(code);
}

/* errno in Go's words: glibc's with a lower-case first letter. */
static const char *errstr(int e)
{
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* Go's fs.ErrPermission: the shell's 126 rather than 127. */
static int is_permission(int e) { return e == EACCES || e == EPERM; }

/*
 * Go's exec findExecutable: 0 when file is a regular file the caller may
 * execute; -errno when it cannot be stat'ed, +errno otherwise.
 */
static int find_executable(const char *file)
{
	struct stat st;
	if (stat(file, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (faccessat(AT_FDCWD, file, X_OK, AT_EACCESS) == 0)
		return 0;
	if (errno != ENOSYS && errno != EPERM)
		return errno;
	return (st.st_mode & 0111) ? 0 : EACCES;
}

static void __attribute__((noreturn)) exec_command(void)
{
	const char *file = cmd_argv[0], *bin = file;
	static char found[RONLY_PATH_MAX];
	if (!strcmp(file, "") || !strcmp(file, ".") || !strcmp(file, ".."))
		cannot_run(RONLY_EXIT_NOT_FOUND, "%s: executable file not found in $PATH", file);
	if (strchr(file, '/')) {
		int e = find_executable(file);
		if (e < 0)
			cannot_run(is_permission(-e) ? RONLY_EXIT_NOT_EXEC : RONLY_EXIT_NOT_FOUND, "%s: stat %s: %s", file, file, errstr(-e));
		if (e > 0)
			cannot_run(is_permission(e) ? RONLY_EXIT_NOT_EXEC : RONLY_EXIT_NOT_FOUND, "%s: %s", file, errstr(e));
	} else {
		const char *path = NULL;
		for (char **e = cmd_env; e && *e; e++)
			if (!strncmp(*e, "PATH=", 5)) {
				path = *e + 5;
				break;
			}
		bin = NULL;
		/* Each element in turn; an empty one means ".", as in the shell. */
		for (const char *p = path, *end; p && *p; p = end + 1) {
			end = strchrnul(p, ':');
			size_t len = (size_t)(end - p);
			while (len > 1 && p[len - 1] == '/')
				len--;
			int n;
			if (len == 0 || (len == 1 && p[0] == '.'))
				n = snprintf(found, sizeof found, "%s", file);
			else
				n = snprintf(found, sizeof found, "%.*s%s%s", (int)len, p, p[len - 1] == '/' ? "" : "/", file);
			if (n > 0 && (size_t)n < sizeof found && find_executable(found) == 0) {
				/* Go refuses what a relative PATH entry finds. */
				if (found[0] != '/')
					cannot_run(RONLY_EXIT_NOT_FOUND, "%s: cannot run executable found relative to current directory", file);
				bin = found;
				break;
			}
			if (!*end)
				break;
		}
		if (!bin)
			cannot_run(RONLY_EXIT_NOT_FOUND, "%s: executable file not found in $PATH", file);
	}
	execve(bin, cmd_argv, cmd_env);
	int e = errno;
	cannot_run(e == ENOENT ? RONLY_EXIT_NOT_FOUND : RONLY_EXIT_NOT_EXEC, "exec %s: %s", file, errstr(e));
}

__attribute__((constructor)) static void ronly_init(void)
{
	const char *env = getenv(RONLY_ENV_INIT_FD);
	if (!env) {
		/* Not invited: `ronly --help`, shims, test binaries, and the
		 * supervisor. Its Go runtime starts each thread with
		 * pthread_create (cgo), and glibc gives each new thread's
		 * first malloc an arena of its own (an mmap of 64 MiB, trimmed,
		 * faulted in): one arena serves the little C it runs, and the
		 * start of a session is about 3% shorter on a 2-core VM. */
		mallopt(M_ARENA_MAX, 1);
		return;
	}
	char *end;
	long fd = strtol(env, &end, 10);
	if (*env == 0 || *end != 0 || fd < 3 || fd > 1024)
		_exit(RONLY_EXIT_RONLY); /* no socket to report on */
	sock = (int)fd;

	read_config();
	if (hdr.flags & RONLY_F_NO_NS) {
		/* Where no namespace can be made: the host's tree stays as it
		 * is, and restrict_fs is what keeps it read-only. */
		hold_writable_dirs();
	} else {
		if (hdr.flags & RONLY_F_USERNS)
			enter_userns();
		enter_namespaces();
		if (hdr.flags & RONLY_F_PIDNS)
			enter_pidns();
		if (hdr.flags & RONLY_F_USERNS)
			open_userns_limits();
		build_root();
		enter_root();
	}
	own_terminal();
	if (hdr.flags & RONLY_F_USERNS)
		limit_userns();
	drop_privileges();
	restrict_fs();
	close_fds();
	load_seccomp();
	if (hdr.flags & RONLY_F_PIDNS)
		become_pid1();
	close(sock);
	free(mounts);
	free(source_fd);
	free(bpf);
	free(fallback);
	if (cmd_argv)
		exec_command();
	ronly_init_ran = 1;
}
