#!/usr/bin/env bash
# Bazel's --workspace_status_command (see .bazelrc). STABLE_ keys go to
# stable-status.txt: a change relinks only the targets that use them (x_defs).
set -u
version="$(git describe --always --dirty 2>/dev/null)" || version=""
echo "STABLE_RONLY_VERSION ${version:-0.0.0-dev}"
