# Sourced by scripts/run.sh and scripts/test.sh: a first run takes minutes (apt, npm, a cold
# build), so every step says what it is doing and how long the one before took.
#   phase_begin NAME   ends the current phase (printing its time) and starts NAME
#   phase_end          ends the current phase; phase_summary prints every phase's time
_phase_tag="${_phase_tag:-$(basename "$0" .sh)}"
_phase_name=""
_phase_start=0
_phase_t0=$(date +%s)
_phase_log=()

phase_end() {
  [ -n "$_phase_name" ] || return 0
  local took=$(($(date +%s) - _phase_start))
  echo "== [$_phase_tag] $_phase_name: done in ${took} s"
  _phase_log+=("$(printf '%6d s  %s' "$took" "$_phase_name")")
  _phase_name=""
}

phase_begin() {
  phase_end
  _phase_name="$1"
  _phase_start=$(date +%s)
  echo "== [$_phase_tag] $1 (at $((_phase_start - _phase_t0)) s)"
}

phase_summary() {
  phase_end
  echo "== [$_phase_tag] time per phase:"
  printf '   %s\n' "${_phase_log[@]}"
  echo "== [$_phase_tag] total $(($(date +%s) - _phase_t0)) s"
}
