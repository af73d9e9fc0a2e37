#!/usr/bin/env bash
# Build the local dind test image (stand-in for docker:dind) against the
# local engine and print its tag. Idempotent; a cached rebuild takes about
# a second. Needs the base image debian:trixie-slim (scripts/engine-up.sh).
#
#   test/dind-image/build.sh            -> prints setup-dind-test/dind:trixie
#   SETUP_DIND_TEST_IMAGE=name:tag test/dind-image/build.sh
#   SETUP_DIND_TEST_IMAGE=setup-dind-test/dind:sid SETUP_DIND_TEST_DOCKER_SUITE=sid test/dind-image/build.sh
#                                       -> dockerd 28 from Debian sid (see the Dockerfile)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${SETUP_DIND_TEST_IMAGE:-setup-dind-test/dind:trixie}"
suite="${SETUP_DIND_TEST_DOCKER_SUITE:-}"

# Always the local engine, whatever DOCKER_HOST/DOCKER_CONTEXT say.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
docker=(docker -H unix:///var/run/docker.sock)

old="$("${docker[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || :)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The classic builder: works with any engine and needs no buildx plugin.
# Its layer cache makes a rebuild with unchanged inputs a no-op.
if ! DOCKER_BUILDKIT=0 "${docker[@]}" build --pull=false --rm --force-rm \
	--label org.opencontainers.image.title=setup-dind-test-dind --build-arg DOCKER_SUITE="$suite" \
	-t "$tag" "$here" >"$log" 2>&1; then
	cat "$log" >&2
	echo "build.sh: building $tag failed" >&2
	exit 1
fi
# A changed Dockerfile leaves the previous build untagged: remove it (fails
# harmlessly while a container still uses it).
new="$("${docker[@]}" image inspect --format '{{.Id}}' "$tag")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then
	"${docker[@]}" rmi "$old" >/dev/null 2>&1 || :
fi
echo "$tag"
