#!/usr/bin/env python3
"""Reference SRTP peer for switchboard's interop tests, on libsrtp (pylibsrtp).

Reads one JSON request on stdin, answers one JSON object on stdout:
  profile            one of the pylibsrtp profile names (e.g. AES128_CM_SHA1_80)
  switchboard_key    hex key||salt that switchboard protects with
  peer_key           hex key||salt this peer protects with
  unprotect_rtp      [hex]   switchboard's SRTP packets, in arrival order
  unprotect_rtcp     [hex]   switchboard's SRTCP packets
  protect_rtp        [hex]   plain RTP for this peer to protect
  protect_rtcp       [hex]   plain RTCP for this peer to protect
  reprotect_rtp      [hex]   plain RTP to protect with switchboard's key
Failures are reported per packet as {"error": "..."}, never as an exit code.
"""
import json
import sys

import pylibsrtp


def session(profile, key_hex, direction):
    policy = pylibsrtp.Policy(
        key=bytes.fromhex(key_hex),
        ssrc_type=direction,
        srtp_profile=getattr(pylibsrtp.Policy, "SRTP_PROFILE_" + profile),
    )
    # libsrtp's default replay window (128) applies to inbound sessions.
    return pylibsrtp.Session(policy=policy)


def run(items, operation):
    out = []
    for item in items:
        try:
            out.append({"ok": operation(bytes.fromhex(item)).hex()})
        except Exception as error:  # pylibsrtp.Error and friends
            out.append({"error": str(error)})
    return out


def main():
    request = json.load(sys.stdin)
    profile = request["profile"]
    inbound = session(profile, request["switchboard_key"], pylibsrtp.Policy.SSRC_ANY_INBOUND)
    outbound = session(profile, request["peer_key"], pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    mirror = session(profile, request["switchboard_key"], pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    json.dump(
        {
            "unprotect_rtp": run(request["unprotect_rtp"], inbound.unprotect),
            "unprotect_rtcp": run(request["unprotect_rtcp"], inbound.unprotect_rtcp),
            "protect_rtp": run(request["protect_rtp"], outbound.protect),
            "protect_rtcp": run(request["protect_rtcp"], outbound.protect_rtcp),
            "reprotect_rtp": run(request["reprotect_rtp"], mirror.protect),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
