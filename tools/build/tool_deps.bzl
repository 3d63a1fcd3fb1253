"""Go modules that the build tools need but ronly's go.mod does not list."""

load("@bazel_gazelle//:deps.bzl", "go_repository")

def tool_dependencies():
    """Declares them; call after go_dependencies(), before go_rules_dependencies().

    Kept out of WORKSPACE and deps.bzl, where `update-repos -prune` would
    delete them as not being in go.mod.
    """

    # x/tools needs x/sys. deps.bzl normally declares it (ronly uses it); this
    # fallback is for the first `bazel run //:gazelle-update-repos`, when
    # deps.bzl is still empty and rules_go would fetch x/sys from GitHub.
    if "org_golang_x_sys" not in native.existing_rules():
        go_repository(
            name = "org_golang_x_sys",
            importpath = "golang.org/x/sys",
            sum = "h1:XbzkgYJHdqh/8m2Uu0W/dQv8nktxx4BFHp1M0gROTXA=",
            version = "v0.49.0",
        )

    # Gazelle imports golang.org/x/tools/go/vcs; without this,
    # go_rules_dependencies() would fetch x/tools from GitHub. go/vcs imports
    # x/sys/execabs: name its label, so this resolves even before deps.bzl
    # declares org_golang_x_sys (gazelle_dependencies() declares one too).
    go_repository(
        name = "org_golang_x_tools",
        build_directives = [
            "gazelle:resolve go golang.org/x/sys/execabs @org_golang_x_sys//execabs",
        ],
        importpath = "golang.org/x/tools",
        sum = "h1:loJ25fNOEhSXfHrpoGj91eCUThwdNX6u24rO1xnNteY=",
        version = "v0.1.11",
    )
