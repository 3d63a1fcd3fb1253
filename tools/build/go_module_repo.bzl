"""go_module_repo: a repository made from a Go module fetched with `go mod download`.

Why: this machine (and CI) reach the Go module proxy but not GitHub or the Bazel
Central Registry. rules_go, Gazelle and the Go SDK itself (golang.org/toolchain)
are all published as Go modules, so the proxy can stand in for http_archive.
The pinned h1: sum is checked here, so WORKSPACE stays reproducible and free of URLs.
"""

def _go(ctx):
    # The host Go is only used to download; everything Bazel builds uses the pinned SDK.
    go = ctx.which("go")
    if go == None:
        go = ctx.path("/usr/local/go/bin/go")
        if not go.exists:
            fail("go_module_repo: no `go` on PATH or at /usr/local/go/bin/go")
    return go

def _run(ctx, args, what, env = {}):
    res = ctx.execute(args, environment = env, timeout = 1200)
    if res.return_code:
        fail("%s failed (%d):\n%s%s" % (what, res.return_code, res.stdout, res.stderr))
    return res.stdout

def _go_module_repo_impl(ctx):
    mod = "%s@%s" % (ctx.attr.module, ctx.attr.version)
    ctx.report_progress("go mod download " + mod)

    # Run outside any go.mod, always in module mode, ignoring the user's GOFLAGS.
    env = {"GO111MODULE": "on", "GOFLAGS": "", "GOTOOLCHAIN": "local"}
    info = json.decode(_run(ctx, [_go(ctx), "mod", "download", "-json", mod], "go mod download " + mod, env))
    if info.get("Error"):
        fail("go mod download %s: %s" % (mod, info["Error"]))
    if info["Sum"] != ctx.attr.sum:
        fail("%s: checksum mismatch: got %s, pinned %s" % (mod, info["Sum"], ctx.attr.sum))
    src = info["Dir"]

    # The module cache is read-only (0444 files, 0555 dirs) and shared: copy
    # it, then make the copy writable so patches apply and `bazel clean` works.
    _run(ctx, ["cp", "-R", src + "/.", "."], "copy " + src)
    _run(ctx, ["chmod", "-R", "u+w", "."], "chmod")
    for d in ctx.attr.executable_dirs:
        _run(ctx, ["sh", "-c", 'find "$1" -type f -exec chmod a+x {} +', "-", d], "chmod +x " + d)
    for p in ctx.attr.patches:
        _run(ctx, ["patch", "-p1", "--no-backup-if-mismatch", "-i", str(ctx.path(p))], "patch " + str(p))
    if ctx.attr.go_mod_vendor:
        # Gazelle's go_repository_tools builds in GOPATH mode from vendor/,
        # which module zips never contain.
        ctx.report_progress("go mod vendor in " + mod)
        _run(ctx, [_go(ctx), "mod", "vendor"], "go mod vendor in " + mod, env)

    if ctx.attr.build_file_content:
        ctx.file("BUILD.bazel", ctx.attr.build_file_content)

go_module_repo = repository_rule(
    implementation = _go_module_repo_impl,
    attrs = {
        "module": attr.string(mandatory = True, doc = "Go module path"),
        "version": attr.string(mandatory = True),
        "sum": attr.string(mandatory = True, doc = "pinned h1: sum, as in go.sum"),
        "patches": attr.label_list(doc = "patch -p1 files, applied in order"),
        "executable_dirs": attr.string_list(doc = "dirs whose files get the execute bit"),
        "go_mod_vendor": attr.bool(doc = "run `go mod vendor` in the copy"),
        "build_file_content": attr.string(doc = "BUILD.bazel to write at the root"),
    },
    # No `environ`: the result is fixed by the pinned sum, whatever GOPROXY,
    # GOMODCACHE or PATH say, so changing them must not refetch.
)
