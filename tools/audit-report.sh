#!/usr/bin/env bash
# The 55-45 statement of an IMVU for a month:
#   ./tools/audit-report.sh --imvu-id IMVU-042 --month 2025-12 [--verify] [--json]
set -euo pipefail
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id|--imvu) [[ $# -ge 2 ]] || { echo "audit-report.sh: $1 needs a value" >&2; exit 2; }; args+=(--imvu "$2"); shift 2 ;;
    --month) [[ $# -ge 2 ]] || { echo "audit-report.sh: --month needs a value" >&2; exit 2; }; args+=(--month "$2"); shift 2 ;;
    -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" audit report --help ;;
    *) args+=("$1"); shift ;;
  esac
done
exec node "$(dirname "$0")/../bin/nexus.js" audit report "${args[@]}"
