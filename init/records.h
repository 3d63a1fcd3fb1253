/*
 * The hand-off between the supervisor (Go, outside) and the init (C, inside).
 *
 * The supervisor writes one ronly_header, header.n_mounts ronly_mount records,
 * header.bpf_len bytes of a classic BPF program (struct sock_filter[]),
 * header.fallback_len bytes of a second one, header.argv_len bytes of the command's arguments and header.env_len bytes of
 * its environment (each string NUL-terminated, one after the other) on the init socket. The init answers with ronly_msg
 * records. Everything else is fixed-size so the C side never parses text. records.go takes every number
 * from this file through cgo; TestRecordLayout (seam_test.go) checks that its encoders put each field at
 * this file's offsets. A new field goes in seam.go's ronly_fields too. Bump RONLY_RECORDS_VERSION on any change.
 */
#ifndef RONLY_RECORDS_H
#define RONLY_RECORDS_H

#include <stdint.h>

#define RONLY_ENV_INIT_FD "_RONLY_INIT_FD" /* names the inherited socket that invites the init */
#define RONLY_MAGIC 0x594c4e52u /* "RNLY" little-endian */
#define RONLY_RECORDS_VERSION 10u
#define RONLY_PATH_MAX 4096
#define RONLY_MAX_MOUNTS 1024u /* mount records the init takes */
#define RONLY_MAX_EXEC_BYTES (32u << 20) /* argv_len and env_len each; execve's own limit is lower */

/* Exit codes, as the shell and docker use them: the init's own, the shims' and ronly's (cinit.Exit*) */
#define RONLY_EXIT_RONLY 125     /* ronly itself, the init or a shim, failed */
#define RONLY_EXIT_NOT_EXEC 126  /* the command was found but cannot be executed */
#define RONLY_EXIT_NOT_FOUND 127 /* the command was not found */

/* ronly_header.flags */
#define RONLY_F_USERNS 0x1u   /* create a user namespace; the parent writes the id maps */
#define RONLY_F_NETNS 0x2u    /* private network namespace with lo up */
#define RONLY_F_KEEP_DAC_READ 0x4u /* keep CAP_DAC_READ_SEARCH: root inside still reads root-only files */
#define RONLY_F_SECCOMP_NOTIFY 0x8u /* load the filter with a user-notification listener */
#define RONLY_F_PIDNS 0x10u /* private PID namespace with its own /proc and a tiny PID 1 */
#define RONLY_F_PTY 0x20u     /* a pty of the sandbox's own devpts on stdin, the controlling terminal of a new
                               * session; its master goes to the supervisor (RONLY_MSG_PTY) */
#define RONLY_F_PTY_OUT 0x40u /* with RONLY_F_PTY: on stdout too */
#define RONLY_F_PTY_ERR 0x80u /* with RONLY_F_PTY: on stderr too */
#define RONLY_F_LISTENER_HELPER 0x200u /* pidfd_getfd is refused (Docker's default seccomp profile without
                                        * CAP_SYS_PTRACE): a helper hands the listener over with SCM_RIGHTS */
#define RONLY_F_NO_NS 0x100u  /* no namespaces, mounts or pivot_root (where none can be made): the host's tree as
                               * it is, Landlock keeping it read-only; only RONLY_M_BIND_RW records, each a
                               * directory that gets a write rule, no bind */

/* A limit of the session's user namespace (RONLY_F_USERNS only): the init
 * writes value, in decimal, to /proc/sys/user/<name>, which inside the new
 * namespace is that namespace's own limit, charged on top of the host's. */
#define RONLY_MAX_USERNS_LIMITS 16u
struct ronly_userns_limit {
	char name[32];  /* "max_inotify_instances"…, NUL-terminated; "" ends the list */
	uint64_t value;
};

struct ronly_header {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t n_mounts;
	uint32_t bpf_len;     /* bytes; a multiple of 8 (struct sock_filter) */
	uint32_t landlock_abi; /* the ABI the supervisor probed and wants enforced; 0 = none */
	uint32_t fallback_len; /* program to load instead when no listener can be had (EBUSY) */
	uint32_t report_fd;    /* an inherited fd kept open for the command's reports (shims); 0 = none */
	struct ronly_userns_limit userns_limits[RONLY_MAX_USERNS_LIMITS];
	/* The command the init execs once the sandbox is sealed, looked up on
	 * the PATH of its environment, which the supervisor computed (shims
	 * first). argv_len 0: no command, the init returns to the Go runtime
	 * (the seam's tests). */
	uint32_t argv_len; /* bytes, NUL-terminated strings; the first is the command */
	uint32_t env_len;  /* bytes, NUL-terminated NAME=VALUE strings */
};

/* ronly_mount.kind, applied in this order of the records */
/* 1, 4 and 6 were the socket covers (an empty file over a socket, a read-only overlay of /run, the
 * Docker guard's socket bound over the host's), retired: the supervisor mediates connect() now. */
#define RONLY_M_TMPFS 2  /* fresh tmpfs at path, size bytes, writable */
#define RONLY_M_BIND_RW 3 /* host directory path bound writable at the same path */
#define RONLY_M_SHIM 5    /* /dev/ronly-shims/NAME, where path is "/NAME": this binary, read-only */
#define RONLY_M_BIND_RO 7 /* path, inside a writable bind made earlier, bound read-only onto itself (a
                           * repository's .git/hooks, config, info); opened without following symlinks */
#define RONLY_M_PIN 8     /* the same, but left writable: a mount point cannot be renamed, removed or
                           * replaced from inside (a repository's .git, so hooks cannot be swapped out) */
#define RONLY_M_HIDE 9    /* path, a regular file (a kubeconfig, a client key), gets an empty read-only file
                           * bound over it; opened without following symlinks */
#define RONLY_M_HIDE_DIR 10 /* path, a directory (a service-account token volume), gets a read-only tmpfs of
                             * mode `mode` over it, holding what the RONLY_M_SHOW records right after it name */
#define RONLY_M_SHOW 11   /* in the RONLY_M_HIDE_DIR before it, the name basename(path): source bound read-only
                           * (a host file, opened without following symlinks before anything is covered), or
                           * an empty file when source is "" */

struct ronly_mount {
	uint32_t kind;
	uint32_t mode; /* tmpfs root mode */
	uint64_t size; /* tmpfs size in bytes */
	/* RONLY_M_BIND_RW (path): the st_dev and
	 * st_ino the supervisor found there. The init opens the path without
	 * following any symlink and stops if it finds another file. */
	uint64_t dev;
	uint64_t ino;
	char path[RONLY_PATH_MAX];   /* absolute, NUL-terminated */
	char source[RONLY_PATH_MAX]; /* RONLY_M_SHOW: the host file shown; "" for an empty one */
};

/* ronly_msg.type */
#define RONLY_MSG_NEED_IDMAP 1 /* init -> parent: I am in a new user ns, write my maps */
#define RONLY_MSG_IDMAP_DONE 2 /* parent -> init */
#define RONLY_MSG_ERROR 3      /* init -> parent: step failed with err (errno) */
#define RONLY_MSG_READY 4      /* init -> parent: about to exec the command; value = landlock ABI enforced */
#define RONLY_MSG_WARN 5       /* init -> parent: a non-fatal degradation */
#define RONLY_MSG_LISTENER 7   /* init -> parent: value = the seccomp listener's descriptor in the sender (found by
                                * its SCM_CREDENTIALS pid), to take with pidfd_getfd: sendmsg is mediated by then */
#define RONLY_MSG_LISTENER_TAKEN 8 /* parent -> init: taken (err = 0), or why not; the init then closes its own */
#define RONLY_MSG_PTY 6        /* init -> parent: the master of the session's pty rides along (SCM_RIGHTS) */

/* ronly_msg.flags of RONLY_MSG_READY */
#define RONLY_READY_LISTENER 0x1u /* the listener was handed over (RONLY_MSG_LISTENER) */
#define RONLY_READY_FALLBACK 0x2u /* a listener was refused; the fallback program is loaded */
#define RONLY_READY_KILLABLE 0x4u /* with RONLY_READY_LISTENER: a notified call waits killably once the supervisor has
                                   * received it (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux 5.19); without it a
                                   * signal can interrupt a call being answered, which the kernel then restarts */

struct ronly_msg {
	uint32_t type;
	int32_t err;
	int32_t value;
	uint32_t flags; /* RONLY_READY_* on RONLY_MSG_READY */
	char step[64];
	char detail[256];
};

#endif
