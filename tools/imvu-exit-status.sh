#!/usr/bin/env bash
# The progress of an IMVU's exit, part by part:  ./tools/imvu-exit-status.sh --imvu-id IMVU-042
set -euo pipefail
imvu=""; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id) [[ $# -ge 2 ]] || { echo "imvu-exit-status.sh: --imvu-id needs a value" >&2; exit 2; }; imvu="$2"; shift 2 ;;
    -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" imvu exit-status --help ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$imvu" ]] || { echo "imvu-exit-status.sh: --imvu-id is required" >&2; exit 2; }
exec node "$(dirname "$0")/../bin/nexus.js" imvu exit-status "$imvu" "${args[@]}"
