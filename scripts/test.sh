#!/usr/bin/env bash
# npm test: jest, with the action's dist/ run by Node 24 (runs.using: node24) unless SETUP_DIND_NODE
# names another node. Arguments go to jest.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_DIND_NODE="${SETUP_DIND_NODE:-$(scripts/node24.sh)}"
export SETUP_DIND_NODE
exec node_modules/.bin/jest --maxWorkers=2 "$@"
