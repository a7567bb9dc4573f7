#!/usr/bin/env python3
"""Outbound calls (CreateSIPParticipant) through the official Python SDK
(`livekit-api`, protobuf on the wire) against a running switchboard that
dials SIPp callees (tests/sipp/uas_*.xml), each on its own loopback port:

- SIPP_ANSWER_UDP: uas_proxy_auth_answer.xml over UDP (407 digest
  challenge, 180 for 1.5 s, 200, waits for BYE), one call;
- SIPP_ANSWER_TCP: uas_auth_answer.xml over TCP (the same with a 401
  challenge, whose digest SIPp checks), one call;
- SIPP_BUSY: uas_busy.xml (486), two calls;
- SIPP_RING: uas_ring_cancel.xml (180 until CANCEL, then 487), one call;
- SIPP_DECLINE: uas_decline.xml (603), one call;
- SIPP_CHALLENGE: uas_challenge.xml (401), dialled with a trunk that has
  no credentials, one call.

Each case asserts what the SDK returns or raises (SipCallError with the
Twirp code, HTTP status and sip_status_code / sip_status), what RoomService
shows of the callee participant, and that /debug/state goes back to zero.
SIPp itself fails when what it expects does not come (credentials, ACK,
BYE, CANCEL); crates/switchboard/tests/outbound_peers.rs checks its exit.

Needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET and the SIPP_*
addresses (host:port). Prints one line per step and "all Python outbound
checks passed" last; exits 1 with the reason on the first failed assertion.
"""

import asyncio
import os
import re
import sys
import time
import traceback

import aiohttp
from livekit import api
from livekit.protocol.models import ParticipantInfo

# What tests/sipp/uas_auth_answer.xml and outbound_peers.rs (for
# uas_proxy_auth_answer.xml) check the digest against.
AUTH_USER = "carrier-user"
AUTH_PASSWORD = "carrier-secret"

# How long uas_(proxy_)auth_answer.xml ring before they answer.
RING_SECONDS = 1.5

ID_CHARS = "[2-9A-HJ-NP-Za-km-z]{12}"


class Failure(Exception):
    """A failed assertion: the message says what was expected and what came."""


def check(condition, what):
    if not condition:
        raise Failure(what)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def step(name):
    print(f"ok   {name}", flush=True)


class Run:
    def __init__(self, lk, http, url, key, secret):
        self.lk = lk
        self.http = http
        self.url = url
        self.key = key
        self.secret = secret

    async def trunk(self, name, env, transport=api.SIPTransport.SIP_TRANSPORT_AUTO, auth=False):
        trunk = api.SIPOutboundTrunkInfo(
            name=name,
            address=os.environ[env],
            numbers=["+15550100"],
            transport=transport,
        )
        if auth:
            trunk.auth_username = AUTH_USER
            trunk.auth_password = AUTH_PASSWORD
        created = await self.lk.sip.create_sip_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=trunk))
        check(re.fullmatch("ST_" + ID_CHARS, created.sip_trunk_id), f"trunk ID {created.sip_trunk_id!r}")
        return created.sip_trunk_id

    def request(self, trunk_id, room, identity, **extra):
        return api.CreateSIPParticipantRequest(
            sip_trunk_id=trunk_id,
            sip_call_to="+15550199",
            room_name=room,
            participant_identity=identity,
            **extra,
        )

    async def participant(self, room, identity):
        """The participant, or None when it is not (or no longer) there."""
        try:
            return await self.lk.room.get_participant(api.RoomParticipantIdentity(room=room, identity=identity))
        except api.TwirpError as err:
            if err.code == "not_found":
                return None
            raise

    async def wait_status(self, room, identity, status, within=10.0):
        """Polls until the participant's sip.callStatus is `status`."""
        deadline = time.monotonic() + within
        seen = []
        while time.monotonic() < deadline:
            p = await self.participant(room, identity)
            current = p.attributes.get("sip.callStatus") if p else None
            if not seen or seen[-1] != current:
                seen.append(current)
            if current == status:
                return p
            await asyncio.sleep(0.05)
        raise Failure(f"{identity} in {room}: sip.callStatus never became {status!r}; saw {seen}")

    async def wait_gone(self, room, identity, within=10.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.participant(room, identity) is None:
                return
            await asyncio.sleep(0.05)
        raise Failure(f"{identity} is still in {room} after {within} s")

    async def nothing_left(self, what):
        """/debug/state: no call, task, RTP port, room or participant left."""
        token = api.AccessToken(self.key, self.secret).with_sip_grants(api.SIPGrants(admin=True)).to_jwt()
        keys = ("calls_active", "call_tasks", "rtp_ports_active", "rooms", "participants")
        deadline = time.monotonic() + 10
        while True:
            async with self.http.get(f"{self.url}/debug/state",
                                     headers={"Authorization": f"Bearer {token}"}) as resp:
                eq(resp.status, 200, "/debug/state status")
                state = await resp.json()
            left = {k: state.get(k) for k in keys if state.get(k) != 0}
            if not left:
                return
            if time.monotonic() > deadline:
                raise Failure(f"after {what}, still held: {left} (state {state})")
            await asyncio.sleep(0.1)

    async def expect_sip_error(self, request, code, http_status, sip_code, sip_status, what):
        """The call must fail with a SipCallError carrying this SIP status."""
        started = time.monotonic()
        try:
            info = await self.lk.sip.create_sip_participant(request)
        except api.SipCallError as err:
            got = f"code={err.code!r} status={err.status} message={err.message!r} meta={err.metadata}"
            eq(err.code, code, f"{what}: Twirp code ({got})")
            eq(err.status, http_status, f"{what}: HTTP status ({got})")
            eq(err.sip_status_code, sip_code, f"{what}: SipCallError.sip_status_code ({got})")
            eq(err.sip_status, sip_status, f"{what}: SipCallError.sip_status ({got})")
            return time.monotonic() - started
        except api.TwirpError as err:
            raise Failure(f"{what}: expected a SipCallError with sip_status_code {sip_code}, got {err}")
        raise Failure(f"{what}: expected a SipCallError {sip_code}, but the call succeeded: {info}")

    # -- cases -------------------------------------------------------------

    async def answered_waiting(self):
        """wait_until_answered=True over UDP: the SDK returns once the
        digest-challenged call is answered, after the 1.5 s of ringing."""
        trunk = await self.trunk("answer-udp", "SIPP_ANSWER_UDP", auth=True)
        room, identity = "out-answer-udp", "callee-udp"
        started = time.monotonic()
        info = await self.lk.sip.create_sip_participant(
            self.request(trunk, room, identity, wait_until_answered=True))
        took = time.monotonic() - started
        check(took >= RING_SECONDS - 0.1,
              f"wait_until_answered returned after {took:.2f} s, before the callee answered ({RING_SECONDS} s)")
        eq(info.participant_identity, identity, "participant_identity")
        eq(info.room_name, room, "room_name")
        check(re.fullmatch("SCL_" + ID_CHARS, info.sip_call_id), f"sip_call_id {info.sip_call_id!r}")
        check(info.participant_id.startswith("PA_"), f"participant_id {info.participant_id!r}")
        p = await self.participant(room, identity)
        check(p is not None, f"{identity} is in {room} once answered")
        eq(p.sid, info.participant_id, "participant sid")
        eq(p.kind, ParticipantInfo.Kind.SIP, "participant kind")
        eq(p.attributes.get("sip.callStatus"), "active", "sip.callStatus once answered")
        eq(p.attributes.get("sip.callID"), info.sip_call_id, "sip.callID attribute")
        eq(p.attributes.get("sip.trunkID"), trunk, "sip.trunkID attribute")
        eq(p.attributes.get("sip.phoneNumber"), "+15550199", "sip.phoneNumber attribute")
        step(f"wait_until_answered=True: digest answered, returned after {took:.2f} s, participant active")
        # The call goes on until the room lets go of it: BYE to SIPp.
        await asyncio.sleep(1.0)
        p = await self.participant(room, identity)
        check(p is not None and p.attributes.get("sip.callStatus") == "active",
              "the answered call is still up a second later")
        await self.lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
        await self.wait_gone(room, identity)
        await self.nothing_left("the answered call over UDP")
        step("removing the participant hangs up (SIPp checks the BYE)")

    async def answered_not_waiting(self):
        """wait_until_answered=False over TCP: the SDK returns at once with
        the participant, dialling goes on and the call becomes active."""
        trunk = await self.trunk("answer-tcp", "SIPP_ANSWER_TCP",
                                 transport=api.SIPTransport.SIP_TRANSPORT_TCP, auth=True)
        room, identity = "out-answer-tcp", "callee-tcp"
        started = time.monotonic()
        info = await self.lk.sip.create_sip_participant(
            self.request(trunk, room, identity, wait_until_answered=False))
        took = time.monotonic() - started
        check(took < 1.0, f"wait_until_answered=False took {took:.2f} s: it must not wait for the answer")
        eq(info.participant_identity, identity, "participant_identity")
        eq(info.room_name, room, "room_name")
        check(re.fullmatch("SCL_" + ID_CHARS, info.sip_call_id), f"sip_call_id {info.sip_call_id!r}")
        p = await self.participant(room, identity)
        check(p is not None, f"{identity} is in {room} as soon as the SDK returns")
        early = p.attributes.get("sip.callStatus")
        check(early in ("dialing", "ringing"), f"sip.callStatus right after the SDK returned: {early!r}")
        await self.wait_status(room, identity, "ringing", within=RING_SECONDS + 1)
        p = await self.wait_status(room, identity, "active", within=RING_SECONDS + 5)
        eq(p.sid, info.participant_id, "the participant that became active")
        step(f"wait_until_answered=False: returned after {took:.2f} s with {early!r}, then ringing, active")
        await self.lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
        await self.wait_gone(room, identity)
        await self.nothing_left("the answered call over TCP")
        step("removing the TCP participant hangs up (SIPp checks the BYE)")

    async def busy(self):
        trunk = await self.trunk("busy", "SIPP_BUSY")
        room = "out-busy"
        await self.expect_sip_error(
            self.request(trunk, room, "busy-waiting", wait_until_answered=True),
            "resource_exhausted", 429, 486, "Busy Here", "486 with wait_until_answered=True")
        check(await self.participant(room, "busy-waiting") is None, "a refused callee is not left in the room")
        await self.nothing_left("the 486 call")
        step("486: SipCallError resource_exhausted (429) with sip_status_code 486 'Busy Here'")

        # Not waiting: the SDK gets the participant, which leaves when the
        # callee refuses.
        started = time.monotonic()
        info = await self.lk.sip.create_sip_participant(
            self.request(trunk, room, "busy-not-waiting", wait_until_answered=False))
        took = time.monotonic() - started
        check(took < 1.0, f"wait_until_answered=False took {took:.2f} s")
        eq(info.participant_identity, "busy-not-waiting", "participant_identity")
        await self.wait_gone(room, "busy-not-waiting")
        await self.nothing_left("the 486 call not waited for")
        step("486 with wait_until_answered=False: participant returned at once, then gone")

    async def ringing_timeout(self):
        trunk = await self.trunk("ring", "SIPP_RING")
        room = "out-ring"
        request = self.request(trunk, room, "nobody-answers", wait_until_answered=True)
        request.ringing_timeout.seconds = 2
        took = await self.expect_sip_error(request, "canceled", 408, 408, "Request Timeout",
                                           "no answer within ringing_timeout=2s")
        check(1.8 <= took <= 8.0, f"the ringing timeout of 2 s ended the call after {took:.2f} s")
        check(await self.participant(room, "nobody-answers") is None, "an unanswered callee is not left in the room")
        await self.nothing_left("the unanswered call")
        step(f"ringing timeout: SipCallError canceled (408) with sip_status_code 408 after {took:.2f} s; "
             "SIPp checks the CANCEL")

    async def decline(self):
        trunk = await self.trunk("decline", "SIPP_DECLINE")
        await self.expect_sip_error(
            self.request(trunk, "out-decline", "declines", wait_until_answered=True),
            "permission_denied", 403, 603, "Decline", "603")
        check(await self.participant("out-decline", "declines") is None, "a declining callee is not left")
        await self.nothing_left("the 603 call")
        step("603: SipCallError permission_denied (403) with sip_status_code 603 'Decline'")

    async def challenge_without_credentials(self):
        trunk = await self.trunk("no-credentials", "SIPP_CHALLENGE")
        try:
            info = await self.lk.sip.create_sip_participant(
                self.request(trunk, "out-challenge", "no-credentials", wait_until_answered=True))
        except api.TwirpError as err:
            got = f"code={err.code!r} status={err.status} message={err.message!r} meta={err.metadata}"
            eq((err.code, err.status), ("failed_precondition", 412), f"401 without credentials ({got})")
            eq(err.message, "sip server required auth, but no username or password was provided",
               f"401 without credentials: LiveKit's text ({got})")
        else:
            raise Failure(f"a 401 to a trunk without credentials succeeded: {info}")
        await self.nothing_left("the challenged call")
        step("401 to a trunk without credentials: failed_precondition (412), no second INVITE")


async def main():
    url = os.environ["LIVEKIT_URL"]
    key = os.environ["LIVEKIT_API_KEY"]
    secret = os.environ["LIVEKIT_API_SECRET"]
    print(f"livekit-api {api.__version__} against {url}", flush=True)
    lk = api.LiveKitAPI(url, key, secret)
    http = aiohttp.ClientSession()
    try:
        run = Run(lk, http, url, key, secret)
        await run.answered_waiting()
        await run.answered_not_waiting()
        await run.busy()
        await run.ringing_timeout()
        await run.decline()
        await run.challenge_without_credentials()
    finally:
        await http.close()
        await lk.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Failure as failure:
        print(f"FAIL {failure}", flush=True)
        sys.exit(1)
    except Exception:  # an SDK error where none was expected, a missing module...
        print("FAIL unexpected error:", flush=True)
        traceback.print_exc()
        sys.exit(1)
    print("all Python outbound checks passed", flush=True)
