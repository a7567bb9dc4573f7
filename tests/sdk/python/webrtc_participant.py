"""A LiveKit client written against the official Python SDK (`livekit`),
as an app or agent would be, joining a switchboard room over /rtc.

It publishes a sine tone as its microphone, records every remote audio
track it is given, sends the digits of --send-dtmf (SipDTMF data packets,
as `publish_dtmf` does for any LiveKit app) three seconds after it
published, then --send-data (a user packet, topic "chat") and an RPC
"echo" to --rpc-to (or, with --rpc-call METHOD=PAYLOAD, those calls in
order; --rpc-to @sip names the room's SIP participant); it answers "echo"
itself (the payload upper-cased).
After --seconds it prints one JSON line:
what it heard from whom (the dominant frequency and level of the last
two seconds of each remote track), the DTMF it received, and the remote
participants' kinds and attributes.

Usage: webrtc_participant.py URL TOKEN --tone HZ --seconds S [--send-dtmf DIGITS]
"""

import argparse
import asyncio
import json
import math
import time

import numpy as np
from livekit import rtc

RATE = 48000


def dominant(samples):
    """(frequency in Hz, RMS) of the last two seconds of `samples`."""
    a = np.asarray(samples[-2 * RATE:], dtype=np.float64)
    if len(a) < RATE // 2:
        return (0.0, 0.0)
    spectrum = np.abs(np.fft.rfft(a * np.hanning(len(a))))
    spectrum[:5] = 0  # no DC
    return (float(np.argmax(spectrum) * RATE / len(a)), float(np.sqrt(np.mean(a * a))))


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--tone", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--send-dtmf", default="")
    parser.add_argument("--send-data", default="")
    parser.add_argument("--rpc-to", default="")
    parser.add_argument("--rpc-call", action="append", default=[])
    parser.add_argument("--mute-after", type=float, default=0.0)
    # Publish nothing (a listener: a call in the room keeps ringing).
    parser.add_argument("--no-publish", action="store_true")
    args = parser.parse_args()

    room = rtc.Room()
    heard = {}
    remotes = {}

    def remember(participant):
        # Attributes accumulate: a participant that has just left may be
        # reported with none.
        seen = remotes.setdefault(participant.identity, {"attributes": {}})
        seen["kind"] = int(participant.kind)
        seen["sid"] = participant.sid
        seen["attributes"].update(participant.attributes)
    dtmf = []
    sent_dtmf = []
    data = []
    rpc = {}
    rpcs = []
    muted = []

    @room.on("track_muted")
    def on_muted(participant, publication):
        muted.append({"who": participant.identity, "track": publication.sid})

    @room.on("data_received")
    def on_data(packet):
        data.append({"from": packet.participant.identity if packet.participant else None,
                     "topic": packet.topic, "payload": packet.data.decode(errors="replace")})


    @room.on("track_subscribed")
    def on_track_subscribed(track, publication, participant):
        samples = heard.setdefault(participant.identity, [])
        remember(participant)

        async def record():
            stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
            async for event in stream:
                samples.extend(np.frombuffer(event.frame.data, dtype=np.int16).tolist())

        asyncio.ensure_future(record())

    @room.on("participant_attributes_changed")
    def on_attributes(changed, participant):
        seen = remotes.setdefault(participant.identity, {"attributes": {}})["attributes"]
        for key, value in changed.items():
            if value:
                seen[key] = value
            else:
                seen.pop(key, None)

    @room.on("sip_dtmf_received")
    def on_dtmf(event):
        dtmf.append({"from": event.participant.identity if event.participant else None,
                     "code": event.code, "digit": event.digit})

    started = time.monotonic()
    await asyncio.wait_for(room.connect(args.url, args.token), 20)
    connected_after = time.monotonic() - started

    @room.local_participant.register_rpc_method("echo")
    async def echo(invocation):
        return invocation.payload.upper()

    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = None
    if not args.no_publish:
        publication = await room.local_participant.publish_track(track, options)
    subscribed = {"at": None}

    async def wait_for_subscriber():
        # Resolved by the server's track_subscribed (what agents wait for
        # before they speak).
        await publication.wait_for_subscription()
        subscribed["at"] = time.monotonic() - started

    if publication is not None:
        asyncio.ensure_future(wait_for_subscriber())

    async def extras():
        for digit in args.send_dtmf:
            await room.local_participant.publish_dtmf(code=0, digit=digit)
            sent_dtmf.append(digit)
        if args.send_data:
            await room.local_participant.publish_data(args.send_data, reliable=True, topic="chat")
        if args.rpc_to and not args.rpc_call:
            try:
                rpc["answer"] = await room.local_participant.perform_rpc(
                    destination_identity=args.rpc_to, method="echo",
                    payload="ping from " + room.local_participant.identity)
            except Exception as e:  # noqa: BLE001 - reported; the test judges it
                rpc["error"] = str(e)
        destination = args.rpc_to
        if destination == "@sip":
            destination = next((p.identity for p in room.remote_participants.values()
                                if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP), "")
        for call in args.rpc_call:
            method, _, payload = call.partition("=")
            outcome = {"method": method, "to": destination}
            try:
                outcome["answer"] = await room.local_participant.perform_rpc(
                    destination_identity=destination, method=method, payload=payload)
            except rtc.RpcError as e:
                outcome["error"] = {"code": e.code, "message": e.message}
            except Exception as e:  # noqa: BLE001 - reported; the test judges it
                outcome["error"] = {"code": None, "message": str(e)}
            rpcs.append(outcome)

    n = 0
    extras_started = False
    dtmf_at = time.monotonic() + 3
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        t = (np.arange(480) + n) / RATE
        frame = (0.3 * 32767 * np.sin(2 * math.pi * args.tone * t)).astype(np.int16)
        n += 480
        if publication is None:
            await asyncio.sleep(0.01)
        else:
            await source.capture_frame(rtc.AudioFrame(frame.tobytes(), RATE, 1, 480))
        if args.mute_after and not track.muted and time.monotonic() - started >= args.mute_after:
            track.mute()
        if not extras_started and time.monotonic() >= dtmf_at:
            extras_started = True
            asyncio.ensure_future(extras())

    # Those still here, as they are now (the others as they were last seen).
    for participant in room.remote_participants.values():
        remember(participant)
    result = {
        "connected_after": connected_after,
        "published": publication.sid if publication else None,
        "subscribed_after": subscribed["at"],
        "heard": {who: dict(zip(("hz", "rms"), dominant(s))) for who, s in heard.items()},
        "dtmf": dtmf,
        "data": data,
        "rpc": rpc,
        "rpcs": rpcs,
        "muted": muted,
        "sent_dtmf": "".join(sent_dtmf),
        "remotes": remotes,
    }
    print(json.dumps(result), flush=True)
    await room.disconnect()


asyncio.run(main())
