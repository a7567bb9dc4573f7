# Shared by the bench scripts: sourced, not run.

# Starts a release build of switchboard on loopback with ephemeral ports,
# its data and log in $work, SIPp's loopback source trusted (so the
# per-source limits of docs/security.md do not cap the rates measured).
# SWITCHBOARD_* variables set by the caller are passed on (log level warn
# unless set). Sets sb_pid, sip (the UDP address) and api, and exports the
# LIVEKIT_* variables the CLI needs.
start_switchboard() {
  local key=bench secret=bench-secret-0123456789abcdef0123456789
  LIVEKIT_API_KEY=$key LIVEKIT_API_SECRET=$secret \
  SWITCHBOARD_SIP__BIND=127.0.0.1 SWITCHBOARD_SIP__UDP_PORT=0 SWITCHBOARD_SIP__TCP_PORT=0 \
  SWITCHBOARD_API__BIND=127.0.0.1 SWITCHBOARD_API__PORT=0 SWITCHBOARD_MEDIA__BIND=127.0.0.1 \
  SWITCHBOARD_CALLS__MAX_ACTIVE=${SWITCHBOARD_CALLS__MAX_ACTIVE:-10000} \
  SWITCHBOARD_LOG__LEVEL=${SWITCHBOARD_LOG__LEVEL:-warn} SWITCHBOARD_DRAIN__MIN_SECS=0 \
  SWITCHBOARD_SECURITY__TRUSTED='[127.0.0.0/8]' SWITCHBOARD_DATA_DIR="$work/data" \
    setsid target/release/switchboard serve --ready-file "$work/ready.json" >"$work/switchboard.log" 2>&1 &
  sb_pid=$!
  for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.05; done
  read -r sip api < <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['sip']['udp'],d['api'])" "$work/ready.json")
  export LIVEKIT_URL=http://$api LIVEKIT_API_KEY=$key LIVEKIT_API_SECRET=$secret
}

# The trunk and rule of bench/sipp/auth_call.xml: +15550100 with digest
# credentials load / load-secret, each call in a room of its own.
add_auth_call_routes() {
  target/release/switchboard sip inbound create '{"trunk": {"name": "load", "numbers": ["+15550100"], "auth_username": "load", "auth_password": "load-secret"}}' >/dev/null
  target/release/switchboard sip dispatch create '{"dispatch_rule": {"name": "own room", "rule": {"dispatch_rule_individual": {"room_prefix": "call-"}}}}' >/dev/null
}

# The value of a column in the last line of a SIPp statistics file.
sipp_stat() { # file column
  local header last
  header=$(head -n 1 "$1"); last=$(tail -n 1 "$1")
  echo "$last" | cut -d';' -f"$(echo "$header" | tr ';' '\n' | grep -n "^$2$" | cut -d: -f1)"
}
