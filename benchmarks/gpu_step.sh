# Sourced by the GPU scripts. step NAME LOGFILE COMMAND...: run COMMAND into LOGFILE, append "NAME: ok|FAILED in Ns"
# to $OUT/summary.txt; on failure set failed=1 and append the log's last lines. Returns the command's status.
step() {
  local name=$1 logfile=$2
  shift 2
  local t0=$SECONDS
  echo "== $name ..."
  "$@" > "$logfile" 2>&1
  local rc=$?
  local line="$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s -> $(basename "$logfile")"
  echo "$line" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || { failed=1; tail -n 8 "$logfile" | cut -c1-200 | sed 's/^/    /' | tee -a "$OUT/summary.txt"; }
  return $rc
}
