#!/usr/bin/env bash
# switchboard against the reference SBC pair, in one run on one box:
# Kamailio (stateful proxy, digest auth, dispatcher) with rtpengine
# (userspace media relay) in front of a SIPp UAS. Both sides get the same
# SIPp client scenario (bench/sipp/auth_call.xml: INVITE, 407, INVITE with
# digest, 200, ACK, held HOLD_MS, BYE) and the same rate steps; each side's
# CPU is the sum over its processes (switchboard; every Kamailio process
# plus rtpengine; the UAS behind Kamailio is reported apart). Each
# side first holds CONCURRENT calls at once (after a short warm-up) and its
# memory (PSS, summed over its processes, so Kamailio's shared memory counts
# once) is read against idle.
#
#   bench/compare/run.sh [seconds-per-step] [rates...]
#   CONCURRENT=1000 bench/compare/run.sh 10 300 600 1000 1200
#
# Needs: kamailio (Debian kamailio), rtpengine (Debian rtpengine-daemon), sipp.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
. bench/lib.sh
seconds=${1:-10}
shift $(( $# > 1 ? 1 : $# ))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(300 600 1000 1200)
concurrent=${CONCURRENT:-1000}
hold=${HOLD_MS:-500}
for tool in kamailio rtpengine sipp; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install kamailio rtpengine-daemon sip-tester)"; exit 2; }
done

cargo build --release -q -p switchboard
work=$(mktemp -d)
pids_to_kill=()
cleanup() {
  for pid in "${pids_to_kill[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_ticks() { local sum=0 pid; for pid in "$@"; do [ -r "/proc/$pid/stat" ] && sum=$(( sum + $(awk '{print $14+$15}' "/proc/$pid/stat") )); done; echo "$sum"; }
pss_kb() { local sum=0 pid; for pid in "$@"; do [ -r "/proc/$pid/smaps_rollup" ] && sum=$(( sum + $(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup") )); done; echo "$sum"; }
ticks=$(getconf CLK_TCK)

# One step: rate, target, then the pids whose CPU counts. Prints
# "ok failed cpu% p99" and leaves SIPp's rtt file for the percentiles.
step() {
  local rate=$1 target=$2; shift 2
  local calls=$(( rate * seconds )) before after start end
  rm -f "$work"/*.csv
  before=$(cpu_ticks "$@"); start=$(date +%s.%N)
  (cd "$work" && timeout $(( seconds * 3 + 30 )) sipp -sf "$root/bench/sipp/auth_call.xml" "$target" \
    -i 127.0.0.1 -p 0 -s +15550100 -au load -ap load-secret -d "$hold" -r "$rate" -m "$calls" \
    -l $(( rate * 3 + 100 )) -nostdin -timeout $(( seconds * 3 )) -recv_timeout 10000 -buff_size 4194304 \
    -trace_stat -stf "$work/stat.csv" -trace_rtt -rtt_freq 1 >/dev/null 2>&1 || true)
  end=$(date +%s.%N); after=$(cpu_ticks "$@")
  local header last
  local ok failed cpu p99
  ok=$(sipp_stat "$work/stat.csv" 'SuccessfulCall(C)')
  failed=$(sipp_stat "$work/stat.csv" 'FailedCall(C)')
  cpu=$(python3 -c "print(round(100*($after-$before)/$ticks/($end-$start),1))")
  p99=$(cat "$work"/*_rtt.csv 2>/dev/null | python3 -c '
import sys
v=sorted(float(l.split(";")[1]) for l in sys.stdin if l[:1].isdigit())
print(round(v[min(len(v)-1,int(.99*len(v)))],1) if v else "nan")')
  echo "$ok $failed $cpu $p99"
}

# Holds $concurrent calls (200 new a second, each held 20 s) and prints the
# PSS of the given pids in KB while all are up, after printing idle PSS.
hold_calls() {
  local target=$1; shift
  local idle peak
  idle=$(pss_kb "$@")
  (cd "$work" && timeout 120 sipp -sf "$root/bench/sipp/auth_call.xml" "$target" -i 127.0.0.1 -p 0 \
    -s +15550100 -au load -ap load-secret -d 20000 -r 200 -m "$concurrent" -l "$concurrent" -nostdin \
    -timeout 90 -buff_size 4194304 >/dev/null 2>&1 || true) &
  local job=$!
  sleep $(( concurrent / 200 + 3 ))
  peak=$(pss_kb "$@")
  wait "$job" || true
  echo "$idle $peak"
}

results=()
run_side() { # name target pids...
  local name=$1 target=$2; shift 2
  # Memory first, on a process that has seen only a short warm-up.
  step 100 "$target" "$@" >/dev/null
  read -r idle peak < <(hold_calls "$target" "$@")
  results+=("$name mem $idle $peak")
  printf '%-22s idle PSS %d MB, %d calls up %d MB: %d KB per call\n' "$name" $(( idle / 1024 )) "$concurrent" $(( peak / 1024 )) $(( (peak - idle) / concurrent ))
  for rate in "${rates[@]}"; do
    read -r ok failed cpu p99 < <(step "$rate" "$target" "$@")
    results+=("$name $rate $ok $failed $cpu $p99")
    printf '%-22s %6s %7s %6s %8s %8s\n' "$name" "$rate" "$ok" "$failed" "$cpu" "$p99"
    [ "$failed" = 0 ] || break
  done
}

echo "switchboard $(git rev-parse --short HEAD); $(kamailio -v | head -1); rtpengine $(rtpengine --version 2>&1 | awk '{print $2}'); SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1); $(nproc) cores"
printf '%-22s %6s %7s %6s %8s %8s\n' side rate ok failed "cpu %" "p99 ms"

# switchboard: the trunk and rule of bench/call-rate.sh.
SWITCHBOARD_CALLS__ANSWER=immediate start_switchboard
pids_to_kill+=("$sb_pid")
add_auth_call_routes
sleep 0.5
run_side switchboard "$sip" "$sb_pid"
kill "$sb_pid"; wait "$sb_pid" 2>/dev/null || true

# Kamailio + rtpengine + SIPp UAS.
uas_port=$(free_port); ng_port=$(free_port); kam_port=$(free_port)
echo "1 sip:127.0.0.1:$uas_port" >"$work/dispatcher.list"
setsid rtpengine --foreground --log-stderr --log-level=3 --table=-1 --interface=127.0.0.1 \
  --listen-ng="127.0.0.1:$ng_port" --port-min=30000 --port-max=40000 --num-threads=2 >"$work/rtpengine.log" 2>&1 &
rtp_pid=$!; pids_to_kill+=("$rtp_pid")
(cd "$work" && setsid sipp -sf "$root/bench/compare/uas.xml" -i 127.0.0.1 -p "$uas_port" -nostdin -bg \
  -buff_size 4194304 >/dev/null 2>&1) || true
uas_pid=$(pgrep -f "compare/uas.xml -i 127.0.0.1 -p $uas_port" | head -1); pids_to_kill+=("$uas_pid")
setsid kamailio -DD -E -f "$root/bench/compare/kamailio.cfg" -l "udp:127.0.0.1:$kam_port" -m 512 -M 16 \
  -A "DISPATCHER_LIST=\"$work/dispatcher.list\"" -A "RTPENGINE_SOCK=\"udp:127.0.0.1:$ng_port\"" \
  -Y "$work" >"$work/kamailio.log" 2>&1 &
kam_pid=$!; pids_to_kill+=("$kam_pid")
sleep 2
kam_pids=($(pgrep -s "$kam_pid"))
run_side "kamailio+rtpengine" "127.0.0.1:$kam_port" "${kam_pids[@]}" "$rtp_pid"
echo "(SIPp UAS behind Kamailio, not counted: $(python3 -c "print(round(100*$(cpu_ticks "$uas_pid")/$ticks,1))") CPU-seconds x100 in all)"

python3 - "${results[@]}" <<'PY'
import sys
rows=[r.split() for r in sys.argv[1:]]
def side(name): return [r for r in rows if r[0]==name]
best={}; cpu={}; mem={}
for name in ("switchboard","kamailio+rtpengine"):
    steps=[r for r in side(name) if r[1]!="mem"]
    ok=[r for r in steps if r[3]=="0"]
    best[name]=max((int(r[1]) for r in ok), default=0)
    cpu[name]={int(r[1]):float(r[4]) for r in ok}
    m=[r for r in side(name) if r[1]=="mem"][0]
    mem[name]=(int(m[3])-int(m[2]))
s,k="switchboard","kamailio+rtpengine"
print(f"highest rate at 0 failures: switchboard {best[s]}/s, Kamailio+rtpengine {best[k]}/s, ratio {best[s]/max(best[k],1):.2f}")
for rate in sorted(set(cpu[s])&set(cpu[k])):
    print(f"CPU at {rate}/s: switchboard {cpu[s][rate]} %, Kamailio+rtpengine {cpu[k][rate]} %, ratio {cpu[s][rate]/max(cpu[k][rate],0.1):.2f}")
print(f"memory per concurrent call: switchboard {mem[s]//1000} KB, Kamailio+rtpengine {mem[k]//1000} KB")
PY
