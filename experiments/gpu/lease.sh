#!/usr/bin/env bash
# A GPU lease used whole (the playbook of the README's GPU section), as verbs that each fit one device `run` call.
#
#   bash experiments/gpu/lease.sh start  WORKDIR CONFIG STOP_AFTER [more sweep.py flags]
#   bash experiments/gpu/lease.sh wait   WORKDIR [SECONDS]    # tail the log until SECONDS (default 540) pass or it ends
#   bash experiments/gpu/lease.sh finish WORKDIR              # stop it cleanly, pack results + checkpoints into $OUT
#   bash experiments/gpu/lease.sh status WORKDIR
#   bash experiments/gpu/lease.sh all    WORKDIR CONFIG STOP_AFTER [more sweep.py flags]   # one call per lease
#
# all: start, wait until the sweep stops itself at STOP_AFTER, then finish: a whole lease in one device call (the
# machine is given back 30 s after a call, which would end a detached sweep between calls). Whatever the sweep
# does, packing starts by LEASE_CALL_S (default 590, the call's limit is 600) - LEASE_PACK_S (default 45) seconds
# after the call began: a sweep still running LEASE_STOP_WAIT (default 60) seconds before that gets SIGTERM, and
# SIGKILL if it has not stopped by then. Give STOP_AFTER with room for setup: 8m.
#
# start: fills WORKDIR from the committed results/<WORKDIR name>/ when it holds no runs yet (LEASE_SEED names
# another folder, or none), unpacks what an earlier lease brought back (archives in lease_in/ or $LEASE_IN, if
# carried: the checkpoint parts are enough when the results are committed), then starts experiments/sweep.py
# detached (setsid nohup) with --stop_after=STOP_AFTER, its output in WORKDIR/lease.log.
# finish: SIGTERM (the sweep checkpoints every unfinished model and rewrites its index), then packs the results
# archive and the unfinished runs' checkpoints (parts of at most 15 MiB, at most 7, at most LEASE_MAX_MIB = 20 MiB
# together: they travel to the next lease beside the repository, 64 MiB in all) into $OUT: at most 8 files, names
# of letters, digits and ._- only. Runs from the repository root with PYTHONPATH=. (no install needed).
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"  # the GPU machine's venv names it python3
verb="${1:?usage: lease.sh start|wait|finish|status|all WORKDIR ...}"
workdir="${2:?WORKDIR missing}"
log="$workdir/lease.log"
pidfile="$workdir/.lease_pid"

alive() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$verb" in
  start)
    config="${3:?CONFIG missing}"; stop_after="${4:?STOP_AFTER missing (e.g. 25m)}"; shift 4
    if alive; then echo "already running (pid $(cat "$pidfile"))"; exit 1; fi
    seed="${LEASE_SEED:-results/$(basename "$workdir")}"
    if [[ "$seed" != none && -d "$seed/runs" && ! -d "$workdir/runs" ]]; then
      rm -rf "$workdir.seeding"; mkdir -p "$workdir.seeding"  # copied whole, then renamed: never half seeded
      if ! cp -R "$seed/." "$workdir.seeding/"; then echo "seeding $workdir from $seed failed"; exit 1; fi
      if [[ -d "$workdir" ]]; then cp -R "$workdir/." "$workdir.seeding/"; rm -rf "$workdir"; fi
      mv "$workdir.seeding" "$workdir"; echo "seeded $workdir from $seed"
    fi
    mkdir -p "$workdir"
    lease_in="${LEASE_IN:-lease_in}"
    # Once per machine: a second start in the same lease must not put the carried files back over newer ones.
    if [[ -d "$lease_in" && ! -f "$workdir/.lease_in_unpacked" ]] && compgen -G "$lease_in/*" > /dev/null; then
      if ! "$PYTHON" experiments/pack.py --workdir="$workdir" --unpack="$lease_in"; then
        echo "not started: the carried files in $lease_in did not unpack (the line above says why)"; exit 1
      fi
      touch "$workdir/.lease_in_unpacked"
    elif [[ -f "$workdir/.lease_in_unpacked" ]]; then
      echo "$lease_in already unpacked on this machine (remove $workdir/.lease_in_unpacked to unpack it again)"
    fi
    echo "=== lease start $(date -u +%Y-%m-%dT%H:%M:%SZ): sweep.py --config=$config --stop_after=$stop_after $*" >> "$log"
    setsid nohup "$PYTHON" experiments/sweep.py --config="$config" --workdir="$workdir" --stop_after="$stop_after" \
      "$@" >> "$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    echo "started pid $! at $(date -u +%H:%M:%S); log $log"
    sleep "${LEASE_START_WAIT:-20}"; tail -n 5 "$log" ;;
  wait)
    seconds="${3:-540}"; end=$((SECONDS + seconds)); shown=$(wc -l < "$log")
    while alive && (( SECONDS < end )); do
      sleep $(( end - SECONDS < 30 ? end - SECONDS : 30 ))
      total=$(wc -l < "$log"); tail -n +$((shown + 1)) "$log" | tail -n 3; shown=$total
    done
    if alive; then echo "still running at $(date -u +%H:%M:%S)"; else echo "not running"; tail -n 20 "$log"; fi ;;
  finish)
    out="${OUT:?OUT is not set: the folder whose files come back}"
    if alive; then
      kill -TERM "$(cat "$pidfile")"
      for _ in $(seq "${LEASE_STOP_WAIT:-60}"); do alive || break; sleep 1; done
      if alive; then echo "no clean exit: killing"; kill -KILL "$(cat "$pidfile")"; fi
    fi
    tail -n 5 "$log"
    "$PYTHON" experiments/pack.py --workdir="$workdir" --out="$out" --checkpoints --max_parts=7 \
      --max_mib="${LEASE_MAX_MIB:-20}"
    ls -l "$out" ;;
  status)
    if alive; then echo "running (pid $(cat "$pidfile"))"; else echo "not running"; fi; tail -n 5 "$log" ;;
  all)
    shift 2
    stop_wait="${LEASE_STOP_WAIT:-60}"
    term_at=$(( ${LEASE_CALL_S:-590} - ${LEASE_PACK_S:-45} - stop_wait ))  # seconds since this call began
    LEASE_START_WAIT=0 bash "$self" start "$workdir" "$@"
    next=$((SECONDS + 60))
    while alive && (( SECONDS < term_at )); do
      sleep 1
      if (( SECONDS >= next )); then tail -n 1 "$log"; next=$((SECONDS + 60)); fi
    done
    LEASE_STOP_WAIT="$stop_wait" bash "$self" finish "$workdir" ;;
  *) echo "unknown verb $verb; allowed: start, wait, finish, status, all"; exit 2 ;;
esac
