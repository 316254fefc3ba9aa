#!/usr/bin/env bash
# Bring an IMVU back from an exit archive, on this platform (same IMVU id, same identity key):
#   ./tools/imvu-import.sh --archive /exports/imvu042/IMVU-042-exit.tar.gz [--platform-key KEY]
#   ./tools/imvu-import.sh --archive /exports/imvu042      (the folder holding one *-exit.tar.gz)
# Verifies the archive offline first (exit 4 names the first bad file), then `nexus imvu import`.
set -euo pipefail
archive=""; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --archive|--export-path) [[ $# -ge 2 ]] || { echo "imvu-import.sh: $1 needs a value" >&2; exit 2; }; archive="$2"; shift 2 ;;
    -h|--help) exec node "$(dirname "$0")/../bin/nexus.js" imvu import --help ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$archive" ]] || { echo "imvu-import.sh: --archive FILE (or the export folder) is required" >&2; exit 2; }
if [[ -d "$archive" ]]; then
  shopt -s nullglob
  files=("$archive"/*-exit.tar.gz)
  [[ ${#files[@]} -eq 1 ]] || { echo "imvu-import.sh: expected one *-exit.tar.gz in $archive, found ${#files[@]}" >&2; exit 7; }
  archive="${files[0]}"
fi
exec node "$(dirname "$0")/../bin/nexus.js" imvu import "$archive" "${args[@]}"
