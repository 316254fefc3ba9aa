#!/usr/bin/env bash
# CLI start-up, measured with hyperfine (Debian package `hyperfine`): `nexus --version` against
# `node -e 0` in the same run, a client command (`nexus imvu list`) and `nexus imvu create` against
# a daemon started here on a throw-away data directory. Not a test: bench/cli/README.md.
#   bash bench/cli/run.sh [runs]        (default 30; markdown tables go to bench/cli/out/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-30}"
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install -y hyperfine)" >&2; exit 2; }
npm run --silent build

work="$(mktemp -d)"
out="bench/cli/out"
mkdir -p "$out"
export NEXUS_HOME="$work/home" NEXUS_CONFIG=''
node bin/nexus.js start --data "$work/data" --port 0 --dns-port 0 --log-level info \
  --plan imvus_per_creator=100000 >"$work/daemon.log" 2>&1 &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  url="$(grep -o '"url":"http://[^"]*"' "$work/daemon.log" | head -1 | cut -d'"' -f4 || true)"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/daemon.log" >&2; exit 1; }
export NEXUS_URL="$url"
node bin/nexus.js identity create alice --role creator >/dev/null
node bin/nexus.js imvu create --name Seed --owner alice --jurisdiction US-CCPA >/dev/null

echo "node $(node --version), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), daemon at $url"
# -N: no intermediate shell, so the figures are the processes themselves.
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$out/startup.md" \
  'node -e 0' 'node bin/nexus.js --version' 'node bin/nexus.js --help' 'node bin/nexus.js imvu list'
# Each run creates a new IMVU, so each needs its own name: {n} from a parameter list.
names="$(seq -s, 1 "$runs")"
hyperfine -N --runs 1 --export-markdown "$out/create.md" --parameter-list n "$names" \
  'node bin/nexus.js imvu create --name Bench{n} --owner alice --jurisdiction US-CCPA' >"$work/create.txt"
# One summary row for the create runs (hyperfine reports each parameter value apart).
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l.startsWith("| `node"));
  const ms = rows.map((r) => Number(r.split("|")[2].trim().split(" ")[0])).sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  console.log(`imvu create: ${ms.length} runs, mean ${mean.toFixed(1)} ms, median ${ms[Math.floor(ms.length / 2)].toFixed(1)} ms, min ${ms[0].toFixed(1)} ms, max ${ms[ms.length - 1].toFixed(1)} ms`);
' "$out/create.md" | tee "$out/create-summary.txt"
cat "$out/startup.md"
