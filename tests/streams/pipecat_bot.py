"""A Pipecat bot that runs offline, for crates/switchboard/tests/streams.rs.

Pipecat's FastAPI WebSocket transport with its Twilio (or Telnyx)
serializer, as a bot author writes it: the gateway connects to /ws, the
bot reads `connected` and `start`, builds the serializer from them, plays a
tone, records what it hears, and ends its pipeline after a while, which
closes the socket (the gateway then hangs up the call).

Usage: pipecat_bot.py <ready-file> <result-file> <twilio|telnyx> <tone-hz> <end-after-secs>
The ready file gets the port once listening; the result file gets what the
bot heard, as JSON, once its pipeline has ended.
"""

import asyncio
import json
import math
import socket
import struct
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import EndFrame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

READY_FILE, RESULT_FILE, PROTOCOL = sys.argv[1], sys.argv[2], sys.argv[3]
TONE_HZ, END_AFTER = float(sys.argv[4]), float(sys.argv[5])
RATE = 8000


def tone(hz: float, seconds: float) -> bytes:
    count = int(RATE * seconds)
    return b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / RATE))) for n in range(count)
    )


def power_at(samples: list[int], hz: float) -> float:
    """Goertzel power of `hz`, per sample."""
    if not samples:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(samples)


class Recorder(FrameProcessor):
    """Keeps the caller's audio as the pipeline receives it."""

    def __init__(self):
        super().__init__()
        self.audio = bytearray()
        self.rates = set()

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio.extend(frame.audio)
            self.rates.add(frame.sample_rate)
        await self.push_frame(frame, direction)


app = FastAPI()
handshake = {}


@app.websocket("/ws")
async def stream(websocket: WebSocket):
    await websocket.accept()
    handshake["connected"] = json.loads(await websocket.receive_text())
    start = json.loads(await websocket.receive_text())
    handshake["start"] = start
    if PROTOCOL == "twilio":
        serializer = TwilioFrameSerializer(
            stream_sid=start["streamSid"],
            call_sid=start["start"]["callSid"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
    else:
        serializer = TelnyxFrameSerializer(
            stream_id=start["stream_id"],
            outbound_encoding=start["start"]["media_format"]["encoding"],
            inbound_encoding="PCMU",
            call_control_id=start["start"]["call_control_id"],
            params=TelnyxFrameSerializer.InputParams(auto_hang_up=False),
        )
    transport = FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    recorder = Recorder()
    worker = PipelineWorker(
        Pipeline([transport.input(), recorder, transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
    )

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport, _client):
        await worker.queue_frame(
            OutputAudioRawFrame(audio=tone(TONE_HZ, 2.0), sample_rate=RATE, num_channels=1)
        )

        async def end_later():
            await asyncio.sleep(END_AFTER)
            await worker.queue_frame(EndFrame())

        asyncio.get_running_loop().create_task(end_later())

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _client):
        await worker.cancel()

    await WorkerRunner(handle_sigint=False).run(worker)
    samples = [s for (s,) in struct.iter_unpack("<h", bytes(recorder.audio[: len(recorder.audio) // 2 * 2]))]
    tail = samples[-RATE:]
    with open(RESULT_FILE, "w") as out:
        json.dump(
            {
                "handshake": handshake,
                "heard_seconds": len(samples) / RATE,
                "rates": sorted(recorder.rates),
                "power_440": power_at(tail, 440.0),
                "power_tone": power_at(tail, TONE_HZ),
            },
            out,
        )


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    with open(READY_FILE + ".tmp", "w") as ready:
        ready.write(str(sock.getsockname()[1]))
    import os

    os.replace(READY_FILE + ".tmp", READY_FILE)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
