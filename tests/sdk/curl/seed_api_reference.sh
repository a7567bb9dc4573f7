#!/usr/bin/env bash
# The curl examples of LiveKit's SIP API reference (seed 000), run as written
# against a running switchboard, plus the JSON files of the trunk guides'
# CLI examples (seeds 002 and 003) posted as snake_case/camelCase Twirp JSON,
# and the Twirp wire rules a hand-written client meets (reference section 4):
# snake_case responses with defaults emitted, JSON errors with exactly
# `Content-Type: application/json`, bad_route, malformed, missing token.
#
# Needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, curl, jq and the
# Python livekit-api package (to sign the tokens), and a server with no trunks
# yet. Exits 1 with the reason on the first failed assertion.
set -euo pipefail

: "${LIVEKIT_URL:?}" "${LIVEKIT_API_KEY:?}" "${LIVEKIT_API_SECRET:?}"
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "FAIL $tool is not on PATH"; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL $*"
  echo "     last response: HTTP $status, Content-Type: $ctype"
  echo "     body: $(cat "$work/body")"
  exit 1
}
step() { echo "ok   $*"; }

# token GRANT [TTL_SECONDS]: an access token signed by the Python SDK.
token() {
  python3 - "$1" "${2:-600}" <<'EOF'
import datetime, os, sys
from livekit import api
grant, ttl = sys.argv[1], int(sys.argv[2])
tok = api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
tok.with_ttl(datetime.timedelta(seconds=ttl))
if grant == "admin":
    tok.with_sip_grants(api.SIPGrants(admin=True))
elif grant == "call":
    tok.with_sip_grants(api.SIPGrants(call=True))
print(tok.to_jwt())
EOF
}

# record: keeps status and Content-Type of the last curl (its -w output).
record() {
  local meta=$1
  status=${meta%% *}
  ctype=${meta#* }
}

# expect_status CODE: the last response had this HTTP status.
expect_status() { [ "$status" = "$1" ] || fail "expected HTTP $1, got $status"; }

# expect_json WHAT JQ_FILTER: the last body is JSON and the filter is true.
expect_json() {
  jq -e "$2" "$work/body" >/dev/null 2>&1 || fail "$1 (jq: $2)"
}

# expect_twirp_error STATUS CODE [MSG]: a Twirp error, JSON with exactly
# application/json, with this code (and message).
expect_twirp_error() {
  expect_status "$1"
  [ "$ctype" = "application/json" ] || fail "Twirp error Content-Type must be exactly application/json, got '$ctype'"
  expect_json "error code $2" ".code == \"$2\""
  if [ $# -ge 3 ]; then
    expect_json "error message '$3'" ".msg == $(jq -n --arg m "$3" '$m')"
  fi
}

# post METHOD BODY [TOKEN] [CONTENT_TYPE]: a Twirp call the way the
# reference's curl examples make it.
post() {
  local args=(-sS -o "$work/body" -w '%{http_code} %{content_type}' -X POST
    "$LIVEKIT_URL/twirp/livekit.SIP/$1" -H "Content-Type: ${4:-application/json}" -d "$2")
  if [ -n "${3:-}" ]; then args+=(-H "Authorization: Bearer $3"); fi
  record "$(curl "${args[@]}")"
}

admin=$(token admin)
status=- ctype=-
: >"$work/body"

# -- seed 000, "Examples": create an inbound trunk ---------------------------
# The reference's body puts the trunk's fields at the top level, not under
# "trunk"; switchboard takes them as the trunk (see the findings notes).
record "$(curl -sS -o "$work/body" -w '%{http_code} %{content_type}' \
  -X POST "$LIVEKIT_URL/twirp/livekit.SIP/CreateSIPInboundTrunk" \
	-H "Authorization: Bearer $admin" \
	-H 'Content-Type: application/json' \
	-d '{ "name": "My trunk", "numbers": ["+15105550100"] }')"
expect_status 200
[[ "$ctype" == application/json* ]] || fail "JSON request answered with Content-Type '$ctype'"
expect_json "trunk ID ST_ + 12 base-57 chars" '.sip_trunk_id | test("^ST_[2-9A-HJ-NP-Za-km-z]{12}$")'
expect_json "name and numbers" '.name == "My trunk" and .numbers == ["+15105550100"]'
expect_json "snake_case names, no camelCase" '(keys | map(select(test("[A-Z]"))) | length) == 0'
expect_json "defaults emitted (EmitUnpopulated)" \
  '.metadata == "" and .allowed_addresses == [] and .allowed_numbers == [] and .auth_username == ""
   and .krisp_enabled == false and .headers == {}'
expect_json "enums as names" '.include_headers == "SIP_NO_HEADERS" and .media_encryption == "SIP_MEDIA_ENCRYPT_DISABLE"'
created=$(cat "$work/body")
trunk_id=$(jq -r .sip_trunk_id "$work/body")
step "000 curl CreateSIPInboundTrunk example"

# -- seed 000, "Examples": list inbound trunks -------------------------------
record "$(curl -sS -o "$work/body" -w '%{http_code} %{content_type}' \
  -X POST "$LIVEKIT_URL/twirp/livekit.SIP/ListSIPInboundTrunk" \
	-H "Authorization: Bearer $admin" \
	-H 'Content-Type: application/json' \
	-d '{}')"
expect_status 200
expect_json "one trunk listed, equal to the created one" \
  "(.items | length) == 1 and .items[0] == $created"
step "000 curl ListSIPInboundTrunk example"

# -- seed 002's CLI file, "Accepting calls from specific phone numbers" ------
post CreateSIPInboundTrunk '{
   "trunk": {
     "name": "My trunk",
     "numbers": [
       "+15105550100"
     ],
     "allowedNumbers": [
       "+13105550100",
       "+17145550100"
     ]
   }
}' "$admin"
expect_status 200
expect_json "camelCase request read, snake_case answer" \
  '.allowed_numbers == ["+13105550100", "+17145550100"] and .numbers == ["+15105550100"] and (has("allowedNumbers") | not)'
step "002 CLI inbound-trunk.json (allowedNumbers) posted as JSON"

# Seed 002's first CLI file (krispEnabled) now collides with the trunk above.
post CreateSIPInboundTrunk '{
  "trunk": {
    "name": "My trunk",
    "numbers": [
      "+15105550100"
    ],
    "krispEnabled": true
  }
}' "$admin"
# LiveKit's text: the new trunk first, with its numbers as Go's %q prints them.
expect_twirp_error 400 invalid_argument \
  "Conflicting inbound SIP Trunks: \"<new>\" and \"$trunk_id\", using the same number(s) [\"+15105550100\"] without AllowedNumbers set"
step "002 CLI inbound-trunk.json (krispEnabled) refused as conflicting, as JSON"

post CreateSIPInboundTrunk '{"trunk": {"name": "open"}}' "$admin"
expect_twirp_error 400 invalid_argument \
  "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers"
step "trunk with neither numbers nor auth nor addresses refused"

# -- seed 003's CLI files: outbound trunk, then participant.json -------------
post CreateSIPOutboundTrunk '{
  "trunk": {
    "name": "My outbound trunk",
    "address": "sip.telnyx.com",
    "numbers": ["+15105550100"]
  }
}' "$admin"
expect_status 200
expect_json "outbound trunk" '.address == "sip.telnyx.com" and .numbers == ["+15105550100"]
  and .transport == "SIP_TRANSPORT_AUTO" and (.sip_trunk_id | test("^ST_[2-9A-HJ-NP-Za-km-z]{12}$"))'
outbound_id=$(jq -r .sip_trunk_id "$work/body")
step "003 CLI outbound-trunk.json (Telnyx) posted as JSON"

post CreateSIPOutboundTrunk '{"trunk": {"name": "uri", "address": "sip:sip.telnyx.com", "numbers": ["+15105550100"]}}' "$admin"
expect_twirp_error 400 invalid_argument
expect_json "SIP URI address text" '.msg | test("should be a hostname or IP, not SIP URI")'
step "outbound address given as a SIP URI refused"

participant=$(jq -n --arg trunk "$outbound_id" '{
  "sip_number": "+15105550100",
  "sip_trunk_id": $trunk,
  "sip_call_to": "+12135550100",
  "room_name": "open-room",
  "participant_identity": "sip-test",
  "participant_name": "Test call participant",
  "wait_until_answered": true
}')
# Not waiting for the answer, through a trunk on TEST-NET-1 (RFC 5737,
# never routed: no real carrier is called): the callee joins the room at
# once and dialling goes on.
post CreateSIPOutboundTrunk '{"trunk": {"name": "test-net", "address": "192.0.2.30", "numbers": ["+15105550100"]}}' "$admin"
expect_status 200
test_net_id=$(jq -r .sip_trunk_id "$work/body")
post CreateSIPParticipant "$(jq --arg t "$test_net_id" '.wait_until_answered = false | .sip_trunk_id = $t' <<<"$participant")" "$(token call)"
expect_status 200
expect_json "participant identity" '.participant_identity == "sip-test"'
expect_json "room" '.room_name == "open-room"'
expect_json "call ID" '.sip_call_id | startswith("SCL_")'
step "003 participant.json: CreateSIPParticipant joins the callee and dials"
post CreateSIPParticipant "$(jq '.sip_call_to = "bob@example.com"' <<<"$participant")" "$(token call)"
expect_twirp_error 400 invalid_argument "SipCallTo should be a phone number or SIP user, not a full SIP URI"
post CreateSIPParticipant "$participant" "$admin"
expect_twirp_error 401 unauthenticated "permissions denied"
step "CreateSIPParticipant: '@' in sip_call_to invalid_argument; admin-only token denied"

# -- Twirp wire rules (reference section 4 and 3) ----------------------------
post ListSIPInboundTrunk '{}'
expect_twirp_error 401 unauthenticated "permissions denied"
post ListSIPInboundTrunk '{}' "$(token none)"
expect_twirp_error 401 unauthenticated "permissions denied"
post ListSIPInboundTrunk '{}' "$(token admin -600)"
expect_twirp_error 401 unauthenticated
expect_json "expired token message" '.msg | test("expired"; "i")'
step "no token, no sip grant, expired token: unauthenticated JSON"

post NoSuchMethod '{}' "$admin"
expect_twirp_error 404 bad_route
expect_json "bad_route meta" '.meta.twirp_invalid_route == "POST /twirp/livekit.SIP/NoSuchMethod"'
post CreateSIPTrunk '{"name": "legacy"}' "$admin"
expect_twirp_error 404 bad_route
post ListSIPInboundTrunk '{}' "$admin" 'text/plain'
expect_twirp_error 404 bad_route
record "$(curl -sS -o "$work/body" -w '%{http_code} %{content_type}' \
  "$LIVEKIT_URL/twirp/livekit.SIP/ListSIPInboundTrunk" -H "Authorization: Bearer $admin")"
expect_twirp_error 404 bad_route
step "unknown method, removed CreateSIPTrunk, wrong Content-Type, GET: bad_route"

post ListSIPInboundTrunk '{"page": ' "$admin"
expect_twirp_error 400 malformed
post ListSIPInboundTrunk '{"page": {}, "trunk_ids": [], "unknown_field": 1}' "$admin"
expect_status 200
expect_json "unknown fields ignored" '(.items | length) == 2'
post ListSIPInboundTrunk '{"trunkIds": ["'"$trunk_id"'"]}' "$admin"
expect_status 200
expect_json "camelCase filter" "(.items | length) == 1 and .items[0].sip_trunk_id == \"$trunk_id\""
post ListSIPInboundTrunk '{}' "$admin" 'application/json; charset=utf-8'
expect_status 200
step "malformed JSON; unknown fields ignored; camelCase input; Content-Type parameters"

post DeleteSIPTrunk "{\"sip_trunk_id\": \"$trunk_id\"}" "$admin"
expect_status 200
expect_json "DeleteSIPTrunk answer" ".sip_trunk_id == \"$trunk_id\""
post ListSIPInboundTrunk '{}' "$admin"
expect_json "deleted trunk gone" "(.items | length) == 1 and .items[0].sip_trunk_id != \"$trunk_id\""
step "DeleteSIPTrunk"

echo "all curl checks passed"
