#!/usr/bin/env bash
# Verify an exit archive offline (no daemon, no network); exit 4 names the first bad file:
#   ./tools/verify-export.sh /exports/imvu042            (the folder holding IMVU-042-exit.tar.gz)
#   ./tools/verify-export.sh /exports/imvu042/IMVU-042-exit.tar.gz
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: verify-export.sh PATH [--platform-key KEY]" >&2; exit 2; }
case "$1" in -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" export verify --help ;; esac
path="$1"; shift
if [[ -d "$path" ]]; then
  shopt -s nullglob
  files=("$path"/*-exit.tar.gz)
  [[ ${#files[@]} -eq 1 ]] || { echo "verify-export.sh: expected one *-exit.tar.gz in $path, found ${#files[@]}" >&2; exit 7; }
  path="${files[0]}"
fi
exec node "$(dirname "$0")/../bin/nexus.js" export verify "$path" "$@"
