#!/usr/bin/env bash
# Exit an IMVU, as the spec writes it:
#   ./tools/imvu-exit.sh --imvu-id IMVU-042 --export-path /exports/imvu042 [--recipient KEY]...
# Starts the exit (the creator's signature alone), waits for the archive, downloads it into the
# export path and verifies it offline. Without --export-path it only starts the exit.
set -euo pipefail
imvu=""; out=""; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id) [[ $# -ge 2 ]] || { echo "imvu-exit.sh: --imvu-id needs a value" >&2; exit 2; }; imvu="$2"; shift 2 ;;
    --export-path) [[ $# -ge 2 ]] || { echo "imvu-exit.sh: --export-path needs a value" >&2; exit 2; }; out="$2"; shift 2 ;;
    -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" imvu exit --help ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$imvu" ]] || { echo "imvu-exit.sh: --imvu-id is required" >&2; exit 2; }
if [[ -n "$out" ]]; then args+=(--out "$out"); fi
exec node "$(dirname "$0")/../bin/nexus.js" imvu exit "$imvu" "${args[@]}"
