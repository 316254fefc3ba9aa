#!/usr/bin/env bash
# Lists the 17 gates as the daemon runs them, with where each is enforced and whether it is yet.
# Fails (exit 4) unless gates 1-17 are all present; with --strict, also unless every one is enforced.
#   ./tools/verify-17-gates.sh [--strict] [--local] [--json]
set -euo pipefail
exec node "$(dirname "$0")/../bin/nexus.js" gates "$@"
