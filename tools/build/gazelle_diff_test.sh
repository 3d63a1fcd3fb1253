#!/usr/bin/env bash
# Test: the BUILD files are what `bazel run //:gazelle` would write.
# Usage: gazelle_diff_test.sh RUNNER, where RUNNER is the //:gazelle runner script.
#
# It runs that runner in diff mode (read-only; Gazelle exits non-zero on any
# change) over the real source tree, found through the WORKSPACE runfile, which
# is a symlink into it. The runner refuses to run without
# BUILD_WORKSPACE_DIRECTORY, which only `bazel run` sets: set it here.
set -euo pipefail
export BUILD_WORKSPACE_DIRECTORY="$(dirname "$(readlink -f WORKSPACE)")"
if ! "$1" -args -mode=diff; then
    echo "BUILD files are stale: run ./tools/bazel run //:gazelle" >&2
    exit 1
fi
