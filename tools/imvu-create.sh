#!/usr/bin/env bash
# One-command IMVU creation, as the lifecycle spec writes it:
#   ./tools/imvu-create.sh --name "MyProject" --owner "creator-8891" --jurisdiction "US-CCPA"
# Optional: --cpu N --memory GB --storage GB --iops N, and any global nexus flag (--json, --server URL, --as ID).
# The owner is a local identity (`nexus identity create creator-8891 --role creator`); the command is signed with its key.
set -euo pipefail
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name|--owner|--jurisdiction|--cpu|--memory|--storage|--iops)
      [[ $# -ge 2 ]] || { echo "imvu-create.sh: $1 needs a value" >&2; exit 2; }
      args+=("$1" "$2"); shift 2 ;;
    -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" imvu create --help ;;
    *) args+=("$1"); shift ;;
  esac
done
exec node "$(dirname "$0")/../bin/nexus.js" imvu create "${args[@]}"
