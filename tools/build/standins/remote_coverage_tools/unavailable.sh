#!/bin/sh
echo "coverage is unavailable: remote_coverage_tools is a local stand-in (Bazel 4.2.3 offline)" >&2
exit 1
