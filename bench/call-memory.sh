#!/usr/bin/env bash
# Memory per call and memory given back. Against a release build (calls
# as in bench/call-rate.sh: digest auth, own room, answered at once, no
# RTP), it measures:
#   1. RSS after a warm-up of 1,000 calls, once /debug/state is back to 0;
#   2. RSS while CONCURRENT (1,000) calls are up at once (held 20 s; no RTP, so less than media.initial_timeout_secs), and
#      from the two the memory per concurrent call;
#   3. RSS after FINISHED (10,000) more calls at 500/s, once every call,
#      task, room and active port is gone, against the value of step 1.
#
#   bench/call-memory.sh [concurrent] [finished]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. bench/lib.sh
concurrent=${1:-1000}
finished=${2:-10000}

cargo build --release -q -p switchboard
work=$(mktemp -d)
trap 'kill "$sb_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
SWITCHBOARD_CALLS__ANSWER=immediate start_switchboard
add_auth_call_routes
token=$(target/release/switchboard token create --sip-admin)
# As bench/call-rate.sh: the routing index takes the new trunk and rule
# from the store's feed; calls sent before it has both fail (4-6 of the
# warm-up's first calls did).
sleep 0.5

rss_kb() { awk '/VmRSS/{print $2}' /proc/$sb_pid/status; }
state() { curl -sf -H "Authorization: Bearer $token" "http://$api/debug/state"; }
# Waits until no call, call task, active port, room, participant or SIP
# transaction (they linger 32 s after the last call, timer J) is left.
settle() {
  for _ in $(seq 120); do
    if state | python3 -c '
import json,sys
d=json.load(sys.stdin)
sys.exit(0 if all(d[k]==0 for k in ("calls_active","call_tasks","rtp_ports_active","rooms","participants"))
         and d["sip_transactions"]==[0,0] else 1)'; then return 0; fi
    sleep 1
  done
  echo "not settled: $(state)"; return 1
}
calls() { # rate count hold_ms
  (cd "$work" && timeout 300 sipp -sf "$root/bench/sipp/auth_call.xml" "$sip" -i 127.0.0.1 -p 0 \
    -s +15550100 -au load -ap load-secret -r "$1" -m "$2" -d "$3" -l "$2" -nostdin -timeout 240 \
    -buff_size 4194304 -trace_stat -stf "$work/stat.csv" >/dev/null 2>&1 || true)
  echo "    $2 calls: $(sipp_stat "$work/stat.csv" 'SuccessfulCall(C)') ok, $(sipp_stat "$work/stat.csv" 'FailedCall(C)') failed"
  rm -f "$work/stat.csv"
}

echo "switchboard $(git rev-parse --short HEAD), $(nproc) cores"
echo "start: RSS $(( $(rss_kb) / 1024 )) MB"
calls 200 1000 500
settle
base=$(rss_kb)
echo "1. after 1000 warm-up calls, settled: RSS $(( base / 1024 )) MB"
calls 200 "$concurrent" 20000 &
sipp_job=$!
peak=0; up=0
for _ in $(seq 40); do
  sleep 1
  n=$(state | python3 -c 'import json,sys;print(json.load(sys.stdin)["calls_active"])')
  r=$(rss_kb)
  if [ "$n" -ge "$up" ]; then up=$n; peak=$r; fi
  [ "$n" -ge "$concurrent" ] && break
done
sleep 3; n=$(state | python3 -c 'import json,sys;print(json.load(sys.stdin)["calls_active"])'); peak=$(rss_kb)
echo "2. $n calls up: RSS $(( peak / 1024 )) MB, $(( (peak - base) / (n > 0 ? n : 1) )) KB per call above the settled value"
wait "$sipp_job"
settle
echo "   after they ended, settled: RSS $(( $(rss_kb) / 1024 )) MB"
calls 500 "$finished" 500
settle
after=$(rss_kb)
echo "3. after $finished more calls, settled: RSS $(( after / 1024 )) MB ($(python3 -c "print(round(100*($after-$base)/$base,1))") % from step 1)"
echo "   threads: $(awk '/Threads/{print $2}' /proc/$sb_pid/status)"
sleep "${LATER_SECS:-60}"
later=$(rss_kb)
echo "   ${LATER_SECS:-60} s later: RSS $(( later / 1024 )) MB ($(python3 -c "print(round(100*($later-$base)/$base,1))") % from step 1), threads: $(awk '/Threads/{print $2}' /proc/$sb_pid/status)"
# One more call: state kept for a while after the burst (digest nonces,
# 90 s) is forgotten when the next request comes.
calls 1 1 500 >/dev/null
sleep 12
last=$(rss_kb)
echo "   after one more call: RSS $(( last / 1024 )) MB ($(python3 -c "print(round(100*($last-$base)/$base,1))") % from step 1)"
state | python3 -c 'import json,sys;d=json.load(sys.stdin);print("   /debug/state:", {k:d[k] for k in ("calls_active","call_tasks","rtp_ports_active","rooms","participants","sip_transactions")})'
