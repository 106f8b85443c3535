#!/usr/bin/env bash
# The one-command demo (`make demo` runs it after installing everything): start the local
# sandbox (Azurite as Azure Blob, rclone serve s3 as Scaleway fr-par), seed SNDS-shaped data,
# rehearse the whole switchover runbook (encrypted copy, full verification with row counts,
# freeze, final delta, gates, switch in rehearsal mode, smoke test, rollback), copy and verify
# the production targets, write the HTML readiness report, pack the rehearsal's evidence
# (signed, sealed) and check it, then stop the sandbox.
#
#   bash scripts/demo.sh [STATE_DIR]        (default .bascule/sandbox)
#   KEEP_SANDBOX=1 bash scripts/demo.sh     leaves the servers running (stop: bascule sandbox down)
set -euo pipefail
STATE="${1:-.bascule/sandbox}"
BIN="${BIN:-.venv/bin}"
SCALE="${DEMO_SCALE:-1}"
started=$(date +%s)

stop_sandbox() {
  if [ "${KEEP_SANDBOX:-0}" = "1" ]; then
    echo "sandbox left running; stop it with: $BIN/bascule sandbox down --state-dir $STATE"
  else
    "$BIN/bascule" sandbox down --state-dir "$STATE" >/dev/null || true
    echo "sandbox stopped (start it again with: $BIN/bascule sandbox up --state-dir $STATE)"
  fi
}
trap stop_sandbox EXIT

echo "== 1/7 sandbox up ($STATE)"
"$BIN/bascule" sandbox up --state-dir "$STATE"
echo "== 2/7 seed SNDS-shaped data (scale $SCALE)"
"$BIN/bascule" sandbox seed --state-dir "$STATE" --scale "$SCALE"

# The sandbox's example config plus the numbers readiness projects to (a demo copy, so the
# generated file stays as `sandbox up` wrote it).
CONFIG="$STATE/demo.yaml"
cat "$STATE/bascule.yaml" > "$CONFIG"
cat >> "$CONFIG" <<'YAML'
switchover:
  production_volume: 450TB     # what the real platform holds
  workers: 8                   # machines copying in parallel (Dask workers)
  final_delta: 1TB             # changed between the bulk copy and the freeze
  freeze_window: 12h           # the write freeze the business accepts
  rehearsal_valid_days: 14
YAML
# shellcheck disable=SC1091
source "$STATE/env.sh"

echo "== 3/7 rehearse runbooks/switchover.yaml"
rehearsal_rc=0
"$BIN/bascule" runbook rehearse runbooks/switchover.yaml -c "$CONFIG" || rehearsal_rc=$?

echo "== 4/7 bulk copy to the production targets, verified with row counts"
"$BIN/bascule" migrate -c "$CONFIG"
"$BIN/bascule" verify -c "$CONFIG" --level full --rows

echo "== 5/7 readiness report"
REPORT="$STATE/readiness.html"
"$BIN/bascule" report -c "$CONFIG" --html "$REPORT"

echo "== 6/7 evidence pack of the rehearsal, signed and checked"
KEY="$STATE/evidence_ed25519"
[ -f "$KEY" ] || "$BIN/bascule" evidence keygen --private-key "$KEY"
PACK="$STATE/evidence-$(date -u +%Y%m%dT%H%M%SZ)"
"$BIN/bascule" evidence pack -c "$CONFIG" -o "$PACK" --key "$KEY"
"$BIN/bascule" evidence check "$PACK" --public-key "$KEY.pub"

echo "== 7/7 sandbox down"
elapsed=$(( $(date +%s) - started ))
echo "demo finished in ${elapsed}s; open the report: $REPORT and $PACK/summary.html"
if [ "$rehearsal_rc" -ne 0 ]; then
  echo "error: the rehearsal failed (exit $rehearsal_rc); see the steps above" >&2
  exit "$rehearsal_rc"
fi
