#!/usr/bin/env bash
# Concurrent inbound G.711 calls into two-party rooms, stepped until loss
# appears. Each step starts N calls (pairs share a room through a callee
# dispatch rule, answered once both are in), each about 16 s of Debian's
# g711a.pcap from SIPp, switchboard mixing and sending the other party's
# audio back. Reports SIPp failures, switchboard's CPU, and the RTP loss and
# concealment switchboard measured on every call (from its "call ended" log
# lines). "sb cpu%" averages over the whole step, ramps included; "all up %"
# is switchboard's CPU over 8 s while every call of the step is up.
#
#   bench/inbound-calls.sh [concurrent calls per step...]
#   bench/inbound-calls.sh 50 100 200 400
#
# OPUS=1 pairs each SIPp G.711 caller with an Opus caller instead
# (crates/switchboard/examples/opus_calls.rs: fullband Opus as a WebRTC
# client sends it), so every room transcodes G.711<->Opus; N is still the
# number of calls (N/2 of each). The Opus callers keep to the band the
# answer's maxplaybackrate allows, as libwebrtc does; OPUS_FULLBAND=1 makes
# them send fullband regardless.
#
# RTP=stream (the default) sends the audio with SIPp's rtp_stream, from an
# ordinary UDP socket per call; RTP=pcap with play_pcap_audio as before
# 2026-12-04, whose raw socket per playing call makes every loopback UDP
# packet cost the sender O(calls) in the kernel (bench/inbound.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. bench/lib.sh
rtp_mode=${RTP:-stream}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(50 100 200 400)

opus=${OPUS:-0}
cargo build --release -q -p switchboard
[ "$opus" = 1 ] && cargo build --release -q -p switchboard --example opus_calls
work=$(mktemp -d)
trap 'kill "$sb_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# Log level info: the "call ended" lines carry the RTP statistics read below.
SWITCHBOARD_LOG__LEVEL=info start_switchboard
target/release/switchboard sip inbound create '{"trunk": {"name": "load", "allowed_addresses": ["127.0.0.1"]}}' >/dev/null
target/release/switchboard sip dispatch create '{"dispatch_rule": {"name": "pairs", "rule": {"dispatch_rule_callee": {"room_prefix": "pair"}}}}' >/dev/null
sleep 0.5
# The A-law payload of Debian's g711a.pcap (30 ms packets), for rtp_stream.
python3 - /usr/share/sip-tester/g711a.pcap "$work/g711a.al" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
endian = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
link_header = {1: 14, 113: 16, 0: 4}[struct.unpack(endian + "I", data[20:24])[0]]
offset, payload = 24, bytearray()
while offset + 16 <= len(data):
    length = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
    packet = data[offset + 16:offset + 16 + length]
    offset += 16 + length
    ip = packet[link_header:]
    rtp = ip[(ip[0] & 15) * 4 + 8:]
    payload += rtp[12 + 4 * (rtp[0] & 15):]
open(sys.argv[2], "wb").write(payload)
PY
scenario=$root/bench/sipp/inbound_g711_stream.xml
[ "$rtp_mode" = pcap ] && scenario=$root/bench/sipp/inbound_g711.xml

echo "RTP from SIPp: $rtp_mode; Opus callers: $opus; switchboard $(git rev-parse --short HEAD), $(nproc) cores, SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1)"
printf '%8s %8s %8s %8s %9s %10s %10s %10s %10s %9s\n' calls ok failed "sb cpu%" "all up %" "rtp rx" "rtp tx" "rtp lost" concealed "loss %"
for n in "${steps[@]}"; do
  csv="$work/rooms.csv"
  sipp_calls=$n
  [ "$opus" = 1 ] && sipp_calls=$(( n / 2 ))
  { echo SEQUENTIAL; for i in $(seq 0 $(( sipp_calls - 1 ))); do
      if [ "$opus" = 1 ]; then echo "room$i;"; else echo "room$(( i / 2 ));"; fi
    done; } >"$csv"
  before_lines=$(wc -l <"$work/switchboard.log")
  cpu_before=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  start=$(date +%s.%N)
  rate=$(( sipp_calls / 4 > 0 ? sipp_calls / 4 : 1 ))
  if [ "$opus" = 1 ]; then
    target/release/examples/opus_calls --server "$sip" --calls "$sipp_calls" --rate "$rate" \
      --hold 16 --prefix room ${OPUS_FULLBAND:+--fullband} >"$work/opus.out" 2>&1 &
    opus_job=$!
  fi
  (cd "$work" && timeout 120 sipp -sf "$scenario" "$sip" -i 127.0.0.1 -p 0 -mp 40000 \
    -inf "$csv" -r "$rate" -l "$sipp_calls" -m "$sipp_calls" -nostdin -timeout 90 -trace_stat -stf "$work/stat.csv" \
    -buff_size 4194304 >/dev/null 2>&1 || true) &
  sipp_job=$!
  # CPU while every call is up: from 1 s after the last call started (the
  # ramp takes 4 s) for 8 s, before the first ends (about 16 s each).
  sleep 5
  plateau_before=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  sleep 8
  plateau_after=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  wait "$sipp_job" || true
  if [ "$opus" = 1 ]; then
    wait "$opus_job" || true
    echo "  $(cat "$work/opus.out")"
  fi
  end=$(date +%s.%N)
  cpu_after=$(awk '{print $14+$15}' /proc/$sb_pid/stat)
  sleep 1
  ok=$(sipp_stat "$work/stat.csv" 'SuccessfulCall(C)')
  failed=$(sipp_stat "$work/stat.csv" 'FailedCall(C)')
  cpu=$(python3 -c "print(round(100*($cpu_after-$cpu_before)/$(getconf CLK_TCK)/($end-$start),1))")
  plateau=$(python3 -c "print(round(100*($plateau_after-$plateau_before)/$(getconf CLK_TCK)/8,1))")
  read -r rx tx lost concealed < <(tail -n +"$(( before_lines + 1 ))" "$work/switchboard.log" | python3 -c '
import re,sys
rx=tx=lost=conc=0
for line in sys.stdin:
    if "call ended" not in line: continue
    g=lambda k: int(re.search(k+r"=(-?\d+)", line).group(1)) if re.search(k+r"=(-?\d+)", line) else 0
    rx+=g("rtp_received"); tx+=g("rtp_sent"); lost+=max(0,g("rtp_lost")); conc+=g("concealed")
print(rx,tx,lost,conc)')
  pct=$(python3 -c "print(round(100*$lost/max(1,$rx+$lost),3))")
  printf '%8s %8s %8s %8s %9s %10s %10s %10s %10s %9s\n' "$n" "$ok" "$failed" "$cpu" "$plateau" "$rx" "$tx" "$lost" "$concealed" "$pct"
  rm -f "$work/stat.csv"
done
