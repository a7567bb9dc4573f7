#!/usr/bin/env bash
# Steps the SIPp call rate against a switchboard release build and reports
# the highest rate at which every transaction succeeded.
#
#   bench/sip-rate.sh [scenario] [transport] [seconds-per-step] [rates...]
#   bench/sip-rate.sh options udp 10 500 1000 2000 4000 8000
#
# scenario: a file in tests/sipp (options, invite_404); transport: udp|tcp.
# Starts its own switchboard on loopback (ephemeral ports), so it can run
# beside anything else. Needs sipp (Debian sip-tester).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-options}
transport=${2:-udp}
seconds=${3:-10}
shift $(( $# > 3 ? 3 : $# ))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500 1000 2000 4000 8000 12000 16000)

cargo build --release -q -p switchboard
# SIPp is one source on loopback: trusted, so the per-source limits of
# docs/security.md do not cap the rates measured here.
work=$(mktemp -d)
trap 'kill "$sb_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
SWITCHBOARD_SIP__BIND=127.0.0.1 SWITCHBOARD_SIP__UDP_PORT=0 SWITCHBOARD_SIP__TCP_PORT=0 \
SWITCHBOARD_LOG__LEVEL=warn SWITCHBOARD_DRAIN__MIN_SECS=0 \
SWITCHBOARD_SECURITY__TRUSTED='[127.0.0.0/8]' \
  target/release/switchboard serve --ready-file "$work/ready.json" >"$work/switchboard.log" 2>&1 &
sb_pid=$!
for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.05; done
target=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['sip'][sys.argv[2]])" "$work/ready.json" "$transport")
sipp_transport=u1; [ "$transport" = tcp ] && sipp_transport=t1

echo "scenario=$scenario transport=$transport step=${seconds}s target=$target cpu=$(nproc) cores"
printf '%8s %10s %10s %10s %8s %9s\n' rate calls ok failed "sb cpu%" "sipp cpu%"
best=0
for rate in "${rates[@]}"; do
  calls=$(( rate * seconds ))
  cpu_before=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  start=$(date +%s.%N)
  # -nr: no SIPp retransmissions, so every loss counts as a failure.
  # bash's time with %P: the generator's own CPU share, to tell when SIPp
  # (single-threaded) and not switchboard is the limit.
  TIMEFORMAT=%P
  sipp_cpu=$( { time timeout $(( seconds * 3 + 30 )) sipp -sf "tests/sipp/$scenario.xml" "$target" -t "$sipp_transport" \
    -i 127.0.0.1 -p 0 -r "$rate" -m "$calls" -l $(( rate * 2 )) -nostdin -nr -timeout $(( seconds * 3 )) \
    -recv_timeout 5000 -buff_size 4194304 -trace_stat -stf "$work/stat.csv" -fd 1000 >/dev/null 2>&1 || true; } 2>&1 )
  end=$(date +%s.%N)
  cpu_after=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  last=$(tail -n 1 "$work/stat.csv")
  header=$(head -n 1 "$work/stat.csv")
  col() { echo "$header" | tr ';' '\n' | grep -n "^$1$" | cut -d: -f1; }
  ok=$(echo "$last" | cut -d';' -f"$(col SuccessfulCall\(C\))")
  failed=$(echo "$last" | cut -d';' -f"$(col FailedCall\(C\))")
  ticks=$(getconf CLK_TCK)
  cpu=$(python3 -c "print(round(100*($cpu_after-$cpu_before)/$ticks/($end-$start),1))")
  printf '%8s %10s %10s %10s %8s %9s\n' "$rate" "$calls" "$ok" "$failed" "$cpu" "$sipp_cpu"
  rm -f "$work/stat.csv"
  if [ "$failed" = 0 ] && [ "$ok" = "$calls" ]; then best=$rate; else break; fi
done
echo "highest rate with zero failed transactions: $best/s"
