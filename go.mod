module ronly.dev/ronly

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/seccomp/libseccomp-golang v0.11.1
	golang.org/x/sys v0.49.0
)
