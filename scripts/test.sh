#!/usr/bin/env bash
# npm test: jest, with the action's dist/ run by Node 24 (runs.using: node24) unless SETUP_DIND_NODE
# names another node. Arguments go to jest.
#
# Each run works in a folder of its own (TMPDIR for jest and everything it starts: job roots, data
# images, certificates), so that two runs on one engine do not meet. However the run ends (passed,
# failed, Ctrl-C, SIGTERM), what it left on the engine is removed: every container with a mount from
# that folder, the networks, volumes and Docker CLI contexts of the setup-dind instances among them,
# then the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_DIND_NODE="${SETUP_DIND_NODE:-$(scripts/node24.sh)}"
export SETUP_DIND_NODE

INSTANCE_LABEL=io.github.setup-dind.instance
base="${TMPDIR:-/tmp}"
run_dir="$(mktemp -d "$base/setup-dind-test-XXXXXX")"
# Job users (runner, runner-nosudo) reach their job roots through it.
chmod 0711 "$run_dir"
export TMPDIR="$run_dir"

# The engine the tests use, whatever DOCKER_* this shell has.
outer=(env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT docker -H unix:///var/run/docker.sock)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

sweep() {
  local instances=() id label sources
  while IFS='|' read -r id label sources; do
    case " $sources" in
      *" $run_dir/"*)
        "${outer[@]}" rm --force --volumes "$id" >/dev/null 2>&1 || true
        [ -n "$label" ] && instances+=("$label")
        echo "test.sh: removed container ${id:0:12} (left by this run)" >&2
        ;;
    esac
  done < <("${outer[@]}" ps --all --quiet --no-trunc | xargs -r "${outer[@]}" inspect --format \
    "{{.Id}}|{{index .Config.Labels \"$INSTANCE_LABEL\"}}|{{range .Mounts}} {{.Source}}{{end}}" 2>/dev/null || true)
  for label in "${instances[@]}"; do
    "${outer[@]}" network ls --quiet --filter "label=$INSTANCE_LABEL=$label" | xargs -r "${outer[@]}" network rm >/dev/null 2>&1 || true
    "${outer[@]}" volume ls --quiet --filter "label=$INSTANCE_LABEL=$label" | xargs -r "${outer[@]}" volume rm --force >/dev/null 2>&1 || true
    for user in "$(id -un)" runner runner-nosudo; do
      home="$(getent passwd "$user" | cut -d: -f6)" || continue
      [ -d "$home/.docker/contexts" ] || continue
      HOME="$home" docker context ls --format '{{.Name}}|{{.Description}}' 2>/dev/null |
        while IFS='|' read -r name description; do
          [ "$description" = "setup-dind instance $label" ] &&
            HOME="$home" as_root docker context rm --force "$name" >/dev/null 2>&1 || true
        done
    done
  done
  # Job roots hold files of the job users and of root (data images, buildx plugins).
  rm -rf "$run_dir" 2>/dev/null || as_root rm -rf "$run_dir" || echo "test.sh: could not remove $run_dir" >&2
}

status=0
# Integration tests mostly wait on the engine: three workers finish sooner than two on 2 cores.
node_modules/.bin/jest --maxWorkers="${SETUP_DIND_TEST_WORKERS:-3}" "$@" &
jest=$!
# A signal to this script alone (a CI timeout) reaches jest too; Ctrl-C reaches the whole group anyway.
trap 'kill -TERM "$jest" 2>/dev/null || true' INT TERM
wait "$jest" || status=$?
# `wait` returns early when a trapped signal arrives: wait for jest itself to end.
while kill -0 "$jest" 2>/dev/null; do wait "$jest" || status=$?; done
trap - INT TERM
sweep
exit "$status"
