#!/usr/bin/env bash
# Full authenticated calls per second: INVITE, 407, ACK, INVITE with
# digest (MD5), 200, ACK, 500 ms held without RTP, BYE, 200 (one SIPp
# process, bench/sipp/auth_call.xml). Each call matches a trunk with
# credentials and an individual dispatch rule, so it gets its own room, and
# is answered at once (calls.answer: immediate). Steps the rate and stops
# at the first step with a failed call. Reports switchboard's and SIPp's
# CPU, setup time (first INVITE to 200, p50/p99/max from SIPp's per-call
# response times) and switchboard's RSS after the step.
#
#   bench/call-rate.sh [seconds-per-step] [rates...]
#   bench/call-rate.sh 10 100 300 600 1000
#
# Extra switchboard settings can be passed as SWITCHBOARD_* variables, e.g.
# SWITCHBOARD_MEDIA__WORKERS=1; HOLD_MS sets how long calls are held (500).
# PERF=1 records a perf profile of the last
# step (switchboard only) and prints its top entries; PERF_DATA=file keeps
# the recording, PERF_ARGS replaces "-F 999 -g" (e.g. "-F 199 --call-graph
# dwarf" for call chains through Rust code built without frame pointers).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. bench/lib.sh
seconds=${1:-10}
shift $(( $# > 1 ? 1 : $# ))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(100 300 600 1000 1200)

cargo build --release -q -p switchboard
work=$(mktemp -d)
trap 'kill "$sb_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
SWITCHBOARD_CALLS__ANSWER=immediate start_switchboard
add_auth_call_routes
sleep 0.5

ticks=$(getconf CLK_TCK)
echo "switchboard $(git rev-parse --short HEAD), $(nproc) cores, SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1), step ${seconds}s"
printf '%6s %7s %7s %6s %8s %9s %8s %8s %8s %8s\n' rate calls ok failed "sb cpu%" "sipp cpu%" "p50 ms" "p99 ms" "max ms" "rss MB"
last_rate=${rates[-1]}
for rate in "${rates[@]}"; do
  calls=$(( rate * seconds ))
  rm -f "$work"/*.csv
  cpu_before=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  start=$(date +%s.%N)
  if [ "${PERF:-0}" = 1 ] && [ "$rate" = "$last_rate" ]; then
    perf record ${PERF_ARGS:--F 999 -g} -p "$sb_pid" -o "$work/perf.data" -- sleep $(( seconds > 2 ? seconds - 2 : 1 )) >/dev/null 2>&1 &
    perf_pid=$!
  fi
  TIMEFORMAT=%P
  sipp_cpu=$( { time (cd "$work" && timeout $(( seconds * 3 + 30 )) sipp -sf "$root/bench/sipp/auth_call.xml" "$sip" \
    -i 127.0.0.1 -p 0 -s +15550100 -au load -ap load-secret -d "${HOLD_MS:-500}" -r "$rate" -m "$calls" -l $(( rate * 3 )) \
    -nostdin -timeout $(( seconds * 3 )) -recv_timeout 10000 -buff_size 4194304 \
    -trace_stat -stf "$work/stat.csv" -trace_rtt -rtt_freq 1 >/dev/null 2>&1 || true); } 2>&1 )
  end=$(date +%s.%N)
  cpu_after=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  ok=$(sipp_stat "$work/stat.csv" 'SuccessfulCall(C)')
  failed=$(sipp_stat "$work/stat.csv" 'FailedCall(C)')
  cpu=$(python3 -c "print(round(100*($cpu_after-$cpu_before)/$ticks/($end-$start),1))")
  read -r p50 p99 pmax < <(cat "$work"/*_rtt.csv 2>/dev/null | python3 -c '
import sys
v=sorted(float(l.split(";")[1]) for l in sys.stdin if l[:1].isdigit())
q=lambda p: v[min(len(v)-1,int(p*len(v)))] if v else float("nan")
print(round(q(.5),1), round(q(.99),1), round(v[-1],1) if v else "nan")')
  rss=$(awk '/VmRSS/{print int($2/1024)}' /proc/$sb_pid/status)
  printf '%6s %7s %7s %6s %8s %9s %8s %8s %8s %8s\n' "$rate" "$calls" "$ok" "$failed" "$cpu" "$sipp_cpu" "$p50" "$p99" "$pmax" "$rss"
  if [ -n "${perf_pid:-}" ]; then
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
      | grep -E '^ +[0-9.]+%' | head -25
    [ -z "${PERF_DATA:-}" ] || cp "$work/perf.data" "$PERF_DATA"
    perf_pid=
  fi
  [ "$failed" = 0 ] && [ "$ok" = "$calls" ] || break
done
grep -c . "$work/switchboard.log" | xargs echo "switchboard log lines (warn and above):"
grep -v '^$' "$work/switchboard.log" | cut -c1-200 | sort | uniq -c | sort -rn | head -5
