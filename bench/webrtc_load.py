"""Load and latency for LiveKit clients in switchboard rooms (bench/webrtc.md).

Clients are the official Python SDK (`livekit`, libwebrtc underneath), many
`rtc.Room`s in this one process; phones are minimal SIP/RTP user agents
written here (PCMU, one UDP socket for SIP and one for RTP each), so the
phones' and the clients' timestamps share one clock.

  load     ROOMS rooms, each with one phone and CLIENTS clients: every
           client publishes a tone and subscribes to everyone; the phone
           sends a 1 kHz tone. Prints one JSON line: what every listener
           received (frames, level) while switchboard's CPU and memory are
           read by the caller (bench/webrtc.sh) over the steady window.
  latency  one room, one phone, one client; tone bursts both ways, onset to
           onset: phone -> client and client -> phone, in milliseconds.
  sip      one room, two phones (the same probe, phone -> phone): what the
           room adds for SIP alone, to compare against.

Usage: webrtc_load.py MODE --api HOST:PORT --sip HOST:PORT --key K --secret S
       [--rooms N] [--clients N] [--seconds S]
"""

import argparse
import asyncio
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated since 3.11, still in Debian 12's 3.11
import json
import math
import os
import random
import statistics
import sys
import time

import numpy as np
from livekit import api, rtc

RATE = 48000
PHONE_HZ = 1000.0


def ulaw_tone(hz, samples, start):
    t = (np.arange(samples) + start) / 8000
    pcm = (0.3 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2").tobytes()
    return audioop.lin2ulaw(pcm, 2)


SILENCE_ULAW = b"\xff" * 160
TONE_ULAW = ulaw_tone(PHONE_HZ, 160, 0)


class Phone(asyncio.DatagramProtocol):
    """A SIP user agent over UDP that calls `to`, then sends and receives PCMU."""

    def __init__(self, sip_addr, to, caller="+15550199"):
        self.sip_addr = sip_addr
        self.to = to
        # The caller's number names its participant: unique per room.
        self.caller = caller
        self.call_id = "%016x@127.0.0.1" % random.getrandbits(64)
        self.tag = "%08x" % random.getrandbits(32)
        self.answered = asyncio.get_event_loop().create_future()
        self.to_header = None
        self.remote_rtp = None
        self.contact = None
        self.received = []  # (arrival time, rms) per RTP packet
        self.burst_sent = []  # send times of each burst's first packet
        self.sending = True

    async def open(self):
        loop = asyncio.get_event_loop()
        self.sip, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.rtp, _ = await loop.create_datagram_endpoint(
            lambda: RtpReceiver(self), local_addr=("127.0.0.1", 0))
        self.sip_port = self.sip.get_extra_info("sockname")[1]
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]

    def request(self, method, uri, cseq, to_header, body=b"", content_type=None):
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};rport;branch=z9hG4bK{random.getrandbits(48):x}",
            "Max-Forwards: 70",
            f"From: <sip:{self.caller}@127.0.0.1>;tag={self.tag}",
            f"To: {to_header}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:phone@127.0.0.1:{self.sip_port}>",
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.sip_addr)

    async def call(self):
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        ).encode()
        uri = f"sip:{self.to}@{self.sip_addr[0]}:{self.sip_addr[1]}"
        self.request("INVITE", uri, 1, f"<sip:{self.to}@{self.sip_addr[0]}>", sdp, "application/sdp")
        await asyncio.wait_for(self.answered, 10)

    def datagram_received(self, data, addr):
        text = data.decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        if lines[0].startswith("SIP/2.0 "):
            status = int(lines[0].split()[1])
            if status == 200 and "INVITE" in headers.get("cseq", "") and not self.answered.done():
                self.to_header = headers["to"]
                self.contact = headers["contact"].strip("<>").split(">")[0]
                port = int(next(l for l in body.split("\r\n") if l.startswith("m=audio")).split()[1])
                host = next(l for l in body.split("\r\n") if l.startswith("c=")).split()[2]
                self.remote_rtp = (host, port)
                self.request("ACK", self.contact, 1, self.to_header)
                self.answered.set_result(True)
            elif status >= 300 and not self.answered.done():
                self.answered.set_exception(RuntimeError(lines[0]))
        elif lines[0].startswith("BYE "):
            reply = [
                "SIP/2.0 200 OK", "Via: " + headers["via"], "From: " + headers["from"],
                "To: " + headers["to"], "Call-ID: " + headers["call-id"], "CSeq: " + headers["cseq"],
                "Content-Length: 0",
            ]
            self.sip.sendto(("\r\n".join(reply) + "\r\n\r\n").encode(), addr)
            self.sending = False

    async def send_media(self, seconds, bursts_at=None):
        """RTP every 20 ms: a continuous tone, or silence with 200 ms bursts
        starting at the times of `bursts_at` (offsets in seconds)."""
        start = time.monotonic()
        seq, ts, n = random.getrandbits(16), random.getrandbits(32), 0
        ssrc = random.getrandbits(32)
        burst_started = set()
        while self.sending and n * 0.02 < seconds:
            elapsed = n * 0.02
            if bursts_at is None:
                # 1 kHz repeats every 8 samples: one payload fits every packet.
                payload = TONE_ULAW
            else:
                burst = next((b for b in bursts_at if b <= elapsed < b + 0.2), None)
                payload = ulaw_tone(PHONE_HZ, 160, n * 160) if burst is not None else SILENCE_ULAW
                if burst is not None and burst not in burst_started:
                    burst_started.add(burst)
                    self.burst_sent.append(time.monotonic())
            header = bytes([0x80, 0]) + (seq & 0xFFFF).to_bytes(2, "big") + \
                (ts & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            self.rtp.sendto(header + payload, self.remote_rtp)
            seq, ts, n = seq + 1, ts + 160, n + 1
            delay = start + n * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def hangup(self):
        if self.to_header and self.sending:
            self.request("BYE", self.contact, 2, self.to_header)


class RtpReceiver(asyncio.DatagramProtocol):
    def __init__(self, phone):
        self.phone = phone

    def datagram_received(self, data, addr):
        if len(data) < 12:
            return
        header = 12 + 4 * (data[0] & 15)
        pcm = audioop.ulaw2lin(data[header:], 2)
        self.phone.received.append((time.monotonic(), audioop.rms(pcm, 2)))


class Client:
    """One LiveKit client: publishes a tone (or bursts), records every
    remote track's frames with their arrival times."""

    def __init__(self, url, token, tone_hz, record=True):
        self.url, self.token, self.tone_hz = url, token, tone_hz
        # Decoding every track in Python costs this process more than
        # switchboard: in load runs one client per room records (the
        # others subscribe, so switchboard sends them everything).
        self.record = record
        self.room = rtc.Room()
        self.frames = {}  # identity -> [(arrival, rms)]
        self.burst_sent = []
        self.room.on("track_subscribed", self.on_track)

    def on_track(self, track, publication, participant):
        if not self.record:
            return
        frames = self.frames.setdefault(participant.identity, [])

        async def record():
            async for event in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
                a = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
                frames.append((time.monotonic(), float(np.sqrt(np.mean(a * a))) if len(a) else 0.0))

        asyncio.ensure_future(record())

    async def join(self):
        await asyncio.wait_for(self.room.connect(self.url, self.token), 30)
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=50)
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

    async def send_media(self, seconds, bursts_at=None):
        start = time.monotonic()
        n = 0
        silence = np.zeros(480, dtype=np.int16)
        # A whole number of periods in 10 ms (tones in steps of 100 Hz):
        # one frame, made once.
        whole = abs(self.tone_hz * 480 / RATE - round(self.tone_hz * 480 / RATE)) < 1e-9
        steady = None
        if whole:
            t = np.arange(480) / RATE
            steady = rtc.AudioFrame(
                (0.3 * 32767 * np.sin(2 * math.pi * self.tone_hz * t)).astype(np.int16).tobytes(),
                RATE, 1, 480)
        burst_started = set()
        while n * 0.01 < seconds:
            elapsed = n * 0.01
            burst = None
            if bursts_at is not None:
                burst = next((b for b in bursts_at if b <= elapsed < b + 0.2), None)
            if bursts_at is None and steady is not None:
                await self.source.capture_frame(steady)
                n += 1
                delay = start + n * 0.01 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            if bursts_at is None or burst is not None:
                t = (np.arange(480) + n * 480) / RATE
                frame = (0.3 * 32767 * np.sin(2 * math.pi * self.tone_hz * t)).astype(np.int16)
                if burst is not None and burst not in burst_started:
                    burst_started.add(burst)
                    self.burst_sent.append(time.monotonic())
            else:
                frame = silence
            await self.source.capture_frame(rtc.AudioFrame(frame.tobytes(), RATE, 1, 480))
            n += 1
            delay = start + n * 0.01 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


def token(key, secret, room, identity):
    return (api.AccessToken(key, secret).with_identity(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt())


def onsets(samples, sent, threshold):
    """Per burst sent at time s: the first arrival after s whose level is
    above `threshold`, minus s (ms)."""
    out = []
    for s in sent:
        hit = next((t for t, rms in samples if t >= s and rms > threshold), None)
        if hit is not None and hit - s < 0.5:
            out.append(round((hit - s) * 1000, 1))
    return out


def summary(values):
    if not values:
        return None
    values = sorted(values)
    return {"n": len(values), "min": values[0], "median": statistics.median(values),
            "max": values[-1]}


async def latency(args, sip_addr, url, with_client):
    room = "latency"
    phone = Phone(sip_addr, room)
    await phone.open()
    bursts = [1.0 + i for i in range(args.seconds - 2)]
    if with_client:
        other = Client(url, token(args.key, args.secret, room, "client"), 600.0)
        await other.join()
    else:
        other = Phone(sip_addr, room, caller="+15550198")
        await other.open()
        await other.call()
    await phone.call()
    # The phone bursts on the whole second, the other side half a second
    # later; each listens to the other.
    await asyncio.gather(
        phone.send_media(args.seconds, bursts),
        other.send_media(args.seconds, [b + 0.5 for b in bursts]),
    )
    phone.hangup()
    if with_client:
        heard_by_client = [f for frames in other.frames.values() for f in frames]
        result = {
            "phone_to_client_ms": summary(onsets(sorted(heard_by_client), phone.burst_sent, 1000)),
            "client_to_phone_ms": summary(onsets(phone.received, other.burst_sent, 1000)),
        }
        await other.room.disconnect()
    else:
        other.hangup()
        result = {
            "phone_to_phone_ms": summary(onsets(other.received, phone.burst_sent, 1000)),
            "back_ms": summary(onsets(phone.received, other.burst_sent, 1000)),
        }
    print(json.dumps(result), flush=True)


async def load(args, sip_addr, url):
    clients, phones = [], []
    for r in range(args.rooms):
        room = f"room{r}"
        for c in range(args.clients):
            clients.append(Client(url, token(args.key, args.secret, room, f"c{r}-{c}"),
                                  300.0 + 100 * c, record=c == 0))
    # Joined a few at a time: each join is a WebSocket, two peer
    # connections and their handshakes.
    for i in range(0, len(clients), 8):
        await asyncio.gather(*(c.join() for c in clients[i:i + 8]))
    for r in range(args.rooms):
        phone = Phone(sip_addr, f"room{r}")
        await phone.open()
        await phone.call()
        phones.append(phone)
    print(json.dumps({"up": time.time()}), flush=True)
    started = time.monotonic()
    await asyncio.gather(*(p.send_media(args.seconds) for p in phones),
                         *(c.send_media(args.seconds) for c in clients))
    window = (started + 3, started + args.seconds - 1)
    def in_window(frames):
        return [rms for t, rms in frames if window[0] <= t < window[1]]
    span = window[1] - window[0]
    expected_tracks = args.clients  # the phone and the other clients
    client_tracks = [(len(in_window(f)), statistics.mean(in_window(f) or [0]))
                     for c in clients for f in c.frames.values()]
    phone_packets = [(len(in_window(p.received)), statistics.mean(in_window(p.received) or [0]))
                     for p in phones]
    result = {
        "rooms": args.rooms,
        "clients_per_room": args.clients,
        "window_s": span,
        "client_tracks": len(client_tracks),
        "client_tracks_expected": args.rooms * expected_tracks,
        # 10 ms frames from the SDK's AudioStream
        "client_frames_per_track_per_s": round(statistics.mean([n for n, _ in client_tracks] or [0]) / span, 1),
        "client_min_frames_per_track_per_s": round(min([n for n, _ in client_tracks] or [0]) / span, 1),
        "client_silent_tracks": sum(1 for _, rms in client_tracks if rms < 300),
        "phone_packets_per_s": round(statistics.mean([n for n, _ in phone_packets] or [0]) / span, 1),
        "phone_min_packets_per_s": round(min([n for n, _ in phone_packets] or [0]) / span, 1),
        "phone_silent": sum(1 for _, rms in phone_packets if rms < 300),
    }
    for p in phones:
        p.hangup()
    await asyncio.gather(*(c.room.disconnect() for c in clients))
    print(json.dumps(result), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["load", "latency", "sip"])
    parser.add_argument("--api", required=True)
    parser.add_argument("--sip", required=True)
    parser.add_argument("--key", default=os.environ.get("LIVEKIT_API_KEY", ""))
    parser.add_argument("--secret", default=os.environ.get("LIVEKIT_API_SECRET", ""))
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=12)
    args = parser.parse_args()
    host, port = args.sip.rsplit(":", 1)
    sip_addr = (host, int(port))
    url = f"ws://{args.api}"
    if args.mode == "load":
        await load(args, sip_addr, url)
    else:
        await latency(args, sip_addr, url, args.mode == "latency")


asyncio.run(main())
