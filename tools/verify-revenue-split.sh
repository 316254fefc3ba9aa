#!/usr/bin/env bash
# Verifies the 55-45 split:
#   ./tools/verify-revenue-split.sh --imvu-id IMVU-042 --month 2025-12
#       the daemon's statement, recomputed here from the verified ledger (checkpoint signature,
#       Merkle root, consistency with your saved checkpoint) and compared; exit 4 if they differ.
#   ./tools/verify-revenue-split.sh --total 15000 [--currency USD]
#       the split of a total in minor units, computed with the platform's own code.
set -euo pipefail
bin="$(dirname "$0")/../bin/nexus.js"
imvu="" month="" total="" rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id|--imvu|--month|--total)
      [[ $# -ge 2 ]] || { echo "verify-revenue-split.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --imvu-id|--imvu) imvu="$2" ;; --month) month="$2" ;; --total) total="$2" ;; esac
      shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) rest+=("$1"); shift ;;
  esac
done
if [[ -n "$total" && -z "$imvu$month" ]]; then
  exec node "$bin" audit split --total "$total" "${rest[@]}"
elif [[ -n "$imvu" && -n "$month" && -z "$total" ]]; then
  exec node "$bin" audit report --imvu "$imvu" --month "$month" --verify "${rest[@]}"
else
  echo "verify-revenue-split.sh: give --imvu-id ID --month YYYY-MM, or --total MINOR (see --help)" >&2
  exit 2
fi
