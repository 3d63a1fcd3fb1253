#!/usr/bin/env bash
# Proof on real work: this repository's own Bazel build and unit tests run
# inside `ronly --profile ci` (the example policy tools/deploy/policies/
# bazel-ci.toml), and afterwards nothing outside the workspace and Bazel's
# cache has changed. CI runs it after `./tools/bazel test //...`, as root.
#
#   tests/bazel_in_ronly.sh [RONLY]      default: the binary Bazel built
#
# Bazel's own sandbox needs namespaces, which ronly refuses: Bazel falls
# back to its processwrapper strategy by itself. The tests that need the
# real kernel (tagged local) stay outside.
set -euo pipefail
cd "$(dirname "$0")/.."
ws=$PWD
src=${1:-bazel-bin/go/cmd/ronly/ronly_/ronly}
# Bazel's output root (~/.cache/bazel/_bazel_$USER), where the run outside
# left everything this build needs: bound writable inside, replacing the
# policy's own rw list, so the script works whatever $HOME is.
cache=$(dirname "$(./tools/bazel info output_base 2>/dev/null)")
[ -d "$cache" ] || { echo "bazel_in_ronly: no Bazel output root: run ./tools/bazel test //... first" >&2; exit 1; }

# The inner build may rewrite bazel-bin: run a copy from outside it. The
# copy, the report and the marker live in a directory of their own, made
# before the marker, so that writing the report changes nothing else.
scratch=$(mktemp -d /var/tmp/ronly-proof.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
ronly=$scratch/ronly
report=$scratch/report.json
marker=$scratch/marker
cp "$src" "$ronly"
chmod 755 "$ronly"

# A server started outside would do the building outside the sandbox.
./tools/bazel shutdown
sleep 1 # mtime granularity: everything after this is newer than $marker
touch "$marker"

# --no-network: Bazel's client talks to its server over loopback TCP, so
# with the host's network it could reach a server outside (another user of
# this output base) and have the build done there. Everything the build
# needs was fetched by the run outside before this one.
"$ronly" --policy tools/deploy/policies/bazel-ci.toml --rw "$cache" --no-network --report "$report" -- \
	sh -c './tools/bazel build //... && ./tools/bazel test --nocache_test_results --test_tag_filters=-local //... && ! touch /etc/ronly-proof 2>/dev/null'

fail=0
if ! grep -q '"profile": "ci"' "$report" || ! grep -q '"code": 0' "$report"; then
	echo "bazel_in_ronly: the report does not show a passing ci session:" >&2
	cat "$report" >&2
	fail=1
fi
# The Bazel server started inside died with the session. (Servers of other
# workspaces on this machine are not ours to judge.)
if pgrep -f -- "A-server.jar.*--workspace_directory=$ws( |\$)" >/dev/null; then
	echo "bazel_in_ronly: a Bazel server outlived the session:" >&2
	pgrep -af -- "A-server.jar.*--workspace_directory=$ws( |\$)" >&2
	fail=1
fi
# Nothing outside the workspace and the cache changed: the system's
# directories and the toolchains' homes, where a build escaping its
# sandbox would write (not /tmp, /var/tmp or $HOME itself, where whoever
# runs this script may be writing its own logs meanwhile).
dirs=()
for d in /etc /usr /opt /srv /var/lib /var/cache "$HOME/go" "$HOME/.cache" "$HOME/.config" "$HOME/.local"; do
	[ -e "$d" ] && dirs+=("$d")
done
changed=$(find "${dirs[@]}" -xdev -newer "$marker" \
	-not -path "$cache" -not -path "$cache/*" -not -path "$ws" -not -path "$ws/*" 2>/dev/null || true)
if [ -n "$changed" ]; then
	echo "bazel_in_ronly: changed outside the workspace and the cache:" >&2
	echo "$changed" >&2
	fail=1
fi
[ "$fail" = 0 ] && echo "bazel_in_ronly: build and unit tests passed inside ronly --profile ci; nothing outside $ws and $cache changed"
exit "$fail"
