#!/usr/bin/env bash
# Isolation boundary checks, from the creator's side:
#   ./tools/verify-imvu-isolation.sh [--imvu-id IMVU-042] [--strict] [--local]
# 1. `nexus audit verify`: the whole log replayed through the gates (an entry that one IMVU's
#    identity got through about another IMVU, a projection that differs, a broken proof: exit 4);
# 2. `nexus gates`: gate 2 (IMVU Isolation) must be enforced (exit 4 otherwise); gate 16
#    (No Cross-IMVU Leakage) is reported as the daemon runs it, and fails only with --strict;
# 3. with --imvu-id: `nexus compute status ID`, the IMVU's workload as the fabric runs it.
set -euo pipefail
bin="$(dirname "$0")/../bin/nexus.js"
imvu=""; strict=0; local_flag=(); args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id) [[ $# -ge 2 ]] || { echo "verify-imvu-isolation.sh: --imvu-id needs a value" >&2; exit 2; }; imvu="$2"; shift 2 ;;
    --strict) strict=1; shift ;;
    --local) local_flag=(--local); shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
node "$bin" "${args[@]}" audit verify
node "$bin" "${args[@]}" --json gates "${local_flag[@]}" | STRICT="$strict" node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const v = JSON.parse(s); const gates = Array.isArray(v) ? v : v.gates;
    const g = (n) => gates.find((x) => x.number === n || x.gate === n);
    const two = g(2), sixteen = g(16);
    if (!two || two.status !== "enforced") { console.error("gate 2 (IMVU Isolation) is not enforced: " + JSON.stringify(two ?? null)); process.exit(4); }
    console.log("✅ gate 2 (IMVU Isolation) enforced in " + (two.enforcedIn ?? "?"));
    if (sixteen && sixteen.status === "enforced") console.log("✅ gate 16 (No Cross-IMVU Leakage) enforced in " + (sixteen.enforcedIn ?? "?"));
    else {
      console.log("⚠️  gate 16 (No Cross-IMVU Leakage): " + JSON.stringify(sixteen?.status ?? "missing"));
      if (process.env.STRICT === "1") process.exit(4);
    }
  });'
if [[ -n "$imvu" ]]; then exec node "$bin" "${args[@]}" compute status "$imvu"; fi
