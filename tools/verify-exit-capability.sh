#!/usr/bin/env bash
# Is exit possible here? Checks that the daemon enforces gate 13 (Exit Portability), then, given an
# archive, verifies it offline:  ./tools/verify-exit-capability.sh [--local] [ARCHIVE]
set -euo pipefail
bin="$(dirname "$0")/../bin/nexus.js"
local_flag=()
case "${1:-}" in
  -h|--help) echo "usage: verify-exit-capability.sh [--local] [ARCHIVE]"; exit 0 ;;
  --local) local_flag=(--local); shift ;;
esac
node "$bin" --json gates "${local_flag[@]}" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const v = JSON.parse(s); const gates = Array.isArray(v) ? v : v.gates;
    const g = gates.find((x) => x.number === 13 || x.gate === 13);
    if (!g || g.status !== "enforced") { console.error("gate 13 (Exit Portability) is not enforced: " + JSON.stringify(g ?? null)); process.exit(4); }
    console.log("✅ gate 13 (Exit Portability) enforced in " + (g.enforcedIn ?? "?"));
  });'
if [[ $# -ge 1 ]]; then exec "$(dirname "$0")/verify-export.sh" "$@"; fi
