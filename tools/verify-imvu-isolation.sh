#!/usr/bin/env bash
# Isolation boundary checks, from the creator's side:
#   ./tools/verify-imvu-isolation.sh [--imvu-id IMVU-042] [--local]
# 1. `nexus audit verify`: the whole log replayed through the gates (an entry that one IMVU's
#    identity got through about another IMVU, a projection that differs, a broken proof: exit 4);
# 2. `nexus gates`: gate 2 (IMVU Isolation) and gate 16 (No Cross-IMVU Leakage) must both be
#    enforced (exit 4 naming the gate otherwise); --strict is accepted and changes nothing (both
#    gates are always required);
# 3. with --imvu-id: `nexus compute status ID`, the IMVU's workload as the fabric runs it.
# NEXUS_BIN names another CLI entry point than this checkout's bin/nexus.js.
set -euo pipefail
bin="${NEXUS_BIN:-$(dirname "$0")/../bin/nexus.js}"
imvu=""; local_flag=(); args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --imvu-id) [[ $# -ge 2 ]] || { echo "verify-imvu-isolation.sh: --imvu-id needs a value" >&2; exit 2; }; imvu="$2"; shift 2 ;;
    --strict) shift ;;
    --local) local_flag=(--local); shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
node "$bin" "${args[@]}" audit verify
node "$bin" "${args[@]}" --json gates "${local_flag[@]}" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const v = JSON.parse(s); const gates = Array.isArray(v) ? v : v.gates;
    const g = (n) => gates.find((x) => x.number === n || x.gate === n);
    let bad = 0;
    for (const [n, name] of [[2, "IMVU Isolation"], [16, "No Cross-IMVU Leakage"]]) {
      const gate = g(n);
      if (gate && gate.status === "enforced") console.log("✅ gate " + n + " (" + name + ") enforced in " + (gate.enforcedIn ?? "?"));
      else { console.error("❌ gate " + n + " (" + name + ") is not enforced: " + JSON.stringify(gate?.status ?? "missing")); bad = 1; }
    }
    if (bad) process.exit(4);
  });'
if [[ -n "$imvu" ]]; then exec node "$bin" "${args[@]}" compute status "$imvu"; fi
