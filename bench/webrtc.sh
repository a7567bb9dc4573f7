#!/usr/bin/env bash
# LiveKit clients (the official Python SDK over /rtc) in switchboard rooms
# with a phone: latency both ways, then CPU and memory as clients are
# added (bench/webrtc.md). The clients and the phones run in one Python
# process (bench/webrtc_load.py); switchboard's CPU is read from /proc over
# 6 s while every participant is up and sending.
#
#   bench/webrtc.sh [LAYOUT...]      LAYOUT is ROOMSxCLIENTS, default:
#   bench/webrtc.sh 1x1 1x4 1x8 1x16 4x1 16x1
#
# ROOMSxCLIENTS: ROOMS rooms, each with one phone (PCMU, 1 kHz tone) and
# CLIENTS clients (each publishes a tone and subscribes to everyone; the
# first of each room also decodes and checks what it receives: frames per
# second per track, silent tracks, and the phone's packets). LATENCY=0
# skips the latency probes.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(1x1 1x4 1x8 1x16 4x1 16x1)

cargo build --release -q -p switchboard
work=$(mktemp -d)
trap 'kill "$sb_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# A fresh switchboard for each measurement: memory is compared with its
# own idle value, not with what an earlier step left to the allocator.
fresh() {
  if [ -n "${sb_pid:-}" ]; then kill "$sb_pid"; wait "$sb_pid" 2>/dev/null || true; fi
  rm -rf "$work/data" "$work/ready.json"
  SWITCHBOARD_CALLS__ANSWER=immediate start_switchboard
  target/release/switchboard sip inbound create '{"trunk": {"name": "phones", "allowed_addresses": ["127.0.0.1"]}}' >/dev/null
  # The number dialled is the room.
  target/release/switchboard sip dispatch create '{"dispatch_rule": {"name": "by number", "rule": {"dispatch_rule_callee": {"room_prefix": ""}}}}' >/dev/null
  sleep 0.5
}
fresh
load() { python3 bench/webrtc_load.py "$@" --api "$api" --sip "$sip"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$sb_pid/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$sb_pid/stat"; }

echo "switchboard $(git rev-parse --short HEAD), $(nproc) cores, livekit (Python SDK) $(python3 -c 'import livekit.rtc as r; print(r.__version__)')"
if [ "${LATENCY:-1}" = 1 ]; then
  echo "latency, onset to onset (ms), phone <-> client:"
  load latency --seconds 12
  echo "the same probe phone <-> phone (two SIP legs in one room):"
  load sip --seconds 12
fi

printf '%7s %7s %8s %9s %10s %12s %12s %12s %s\n' layout clients "sb cpu%" "rss MB" "KB/client" "frames/s" "min fr/s" "phone pk/s" "silent"
for layout in "${layouts[@]}"; do
  rooms=${layout%x*}; clients=${layout#*x}
  fresh
  rss_before=$(rss_kb)
  load load --rooms "$rooms" --clients "$clients" --seconds 14 >"$work/load.out" 2>"$work/load.err" &
  job=$!
  for _ in $(seq 600); do grep -q '"up"' "$work/load.out" 2>/dev/null && break; sleep 0.1; done
  sleep 3
  ticks_before=$(cpu_ticks)
  sleep 6
  ticks_after=$(cpu_ticks)
  rss_up=$(rss_kb)
  wait "$job" || { cat "$work/load.err"; exit 1; }
  python3 - "$layout" "$rooms" "$clients" "$rss_before" "$rss_up" "$ticks_before" "$ticks_after" "$(getconf CLK_TCK)" "$work/load.out" <<'PY'
import json, sys
layout, rooms, clients, rss_before, rss_up, t0, t1, hz, out = sys.argv[1:]
rooms, clients = int(rooms), int(clients)
r = json.loads(open(out).read().strip().splitlines()[-1])
total = rooms * clients
cpu = 100 * (int(t1) - int(t0)) / int(hz) / 6
per_client = (int(rss_up) - int(rss_before)) / total
silent = f'{r["client_silent_tracks"]} of {r["client_tracks"]} tracks ({r["client_tracks_expected"]} expected), {r["phone_silent"]} phones'
print(f'{layout:>7} {total:>7} {cpu:>8.1f} {int(rss_up)/1024:>9.1f} {per_client:>10.0f} '
      f'{r["client_frames_per_track_per_s"]:>12} {r["client_min_frames_per_track_per_s"]:>12} '
      f'{r["phone_packets_per_s"]:>12} {silent}')
PY
done
