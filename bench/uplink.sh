#!/usr/bin/env bash
# Calls on switchboard A whose rooms are on B (`rooms.backend: livekit`,
# B standing in for a LiveKit server): what each bridged call costs A (its
# private room, the uplink's WebRTC client: Opus both ways, SRTP, SCTP) and
# the added latency, measured with bench/webrtc_load.py (phones call A,
# the official Python SDK's clients join the same rooms on B).
#
#   bench/uplink.sh [ROOMS...]       default: 1 4 8 16 (one phone, one client each)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(1 4 8 16)

cargo build --release -q -p switchboard
work_b=$(mktemp -d); work_a=$(mktemp -d)
trap 'kill "$a_pid" "$b_pid" 2>/dev/null || true; rm -rf "$work_a" "$work_b"' EXIT
work=$work_b start_switchboard
b_pid=$sb_pid; b_api=$api
work=$work_a SWITCHBOARD_CALLS__ANSWER=immediate SWITCHBOARD_ROOMS__BACKEND=livekit \
  SWITCHBOARD_ROOMS__LIVEKIT__URL=ws://$b_api SWITCHBOARD_ROOMS__LIVEKIT__API_KEY=bench \
  SWITCHBOARD_ROOMS__LIVEKIT__API_SECRET=bench-secret-0123456789abcdef0123456789 start_switchboard
a_pid=$sb_pid; a_sip=$sip
# LIVEKIT_URL now points at A: its trunk and rule (the number dialled is the room).
target/release/switchboard sip inbound create '{"trunk": {"name": "phones", "allowed_addresses": ["127.0.0.1"]}}' >/dev/null
target/release/switchboard sip dispatch create '{"dispatch_rule": {"name": "by number", "rule": {"dispatch_rule_callee": {"room_prefix": ""}}}}' >/dev/null
sleep 0.5
load() { python3 bench/webrtc_load.py "$@" --api "$b_api" --sip "$a_sip"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

echo "switchboard $(git rev-parse --short HEAD), $(nproc) cores"
echo "latency, onset to onset (ms), phone -> A -> B -> SDK client and back:"
load latency --seconds 12
printf '%7s %9s %9s %9s %10s %12s %12s\n' calls "A cpu%" "B cpu%" "A rss MB" "A KB/call" "frames/s" "phone pk/s"
for n in "${steps[@]}"; do
  rss_before=$(rss_kb "$a_pid")
  load load --rooms "$n" --clients 1 --seconds 14 >"$work_a/load.out" 2>"$work_a/load.err" &
  job=$!
  for _ in $(seq 600); do grep -q '"up"' "$work_a/load.out" 2>/dev/null && break; sleep 0.1; done
  sleep 3
  a0=$(cpu_ticks "$a_pid"); b0=$(cpu_ticks "$b_pid")
  sleep 6
  a1=$(cpu_ticks "$a_pid"); b1=$(cpu_ticks "$b_pid")
  rss_up=$(rss_kb "$a_pid")
  wait "$job" || { cat "$work_a/load.err"; exit 1; }
  python3 - "$n" "$a0" "$a1" "$b0" "$b1" "$rss_before" "$rss_up" "$(getconf CLK_TCK)" "$work_a/load.out" <<'PY'
import json, sys
n, a0, a1, b0, b1, before, up, hz, out = sys.argv[1:]
r = json.loads(open(out).read().strip().splitlines()[-1])
n = int(n); hz = int(hz)
print(f'{n:>7} {100*(int(a1)-int(a0))/hz/6:>9.1f} {100*(int(b1)-int(b0))/hz/6:>9.1f} '
      f'{int(up)/1024:>9.1f} {(int(up)-int(before))/n:>10.0f} '
      f'{r["client_frames_per_track_per_s"]:>12} {r["phone_packets_per_s"]:>12}')
PY
  sleep 3
done
