// Package bpf holds ronly's seccomp policy and compiles it to a classic BPF
// program for x86_64.
//
// The policy is data: syscalls.policy, embedded in the binary, lists one
// rule per line (a syscall, the errno it fails with, optional argument
// conditions, and the reason it is refused). Everything else is allowed: the
// read-only mounts, Landlock and the user namespace are ronly's walls, and this
// filter is defence in depth against the calls that could undo them (the mount
// API, new namespaces, writing into other processes, kernel-wide state,
// terminal injection). Calls through any other ABI (i386 int 0x80, x32) kill
// the process.
//
// Compile turns the rules into the bytes of a struct sock_filter array with
// libseccomp; the C init loads those bytes with seccomp(2) just before exec and
// never compiles anything itself. In ModeNotify the refused calls are sent to a
// supervisor on the filter's listener fd instead; the supervisor uses Table to
// answer each with the rule's errno and to count it under the syscall's name.
//
// Notes for the code around this package:
//
//   - The supervisor answers with an error only, never by letting a call
//     continue: the arguments live in user memory the caller can change.
//     libseccomp-golang's ScmpNotifResp.Error takes the errno positive (it
//     negates it); a negative value makes the call return that number as a
//     success value without running.
//   - clone3 fails with ENOSYS (a quiet rule: never notified). glibc falls back
//     to clone. Go's syscall package uses clone3 only for
//     SysProcAttr.UseCgroupFD (and CLONE_NEWTIME) and has no fallback, so those
//     fail inside the sandbox; plain os/exec uses clone and works.
//   - nr -1 (a tracer skipping a call) reaches the default action; the kernel
//     fails it with ENOSYS.
package bpf
