"""A LiveKit agent written as the livekit-agents docs show (no cloud
plugins): a worker that, given a job, joins the room, subscribes to the
caller and publishes a steady tone as its voice.

Run as any agent is run: `python tone_agent.py start`, with LIVEKIT_URL,
LIVEKIT_API_KEY and LIVEKIT_API_SECRET set; AGENT_NAME names the agent
(empty: LiveKit's default, unnamed dispatch) and TONE_HZ its tone.
"""

import asyncio
import math
import os

import numpy as np
from livekit import rtc
from livekit.agents import AutoSubscribe, JobContext, WorkerOptions, cli

RATE = 48000
TONE_HZ = float(os.environ.get("TONE_HZ", "600"))


async def entrypoint(ctx: JobContext):
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    print(f"agent joined {ctx.room.name} as {ctx.room.local_participant.identity}", flush=True)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("roomio_audio", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await ctx.room.local_participant.publish_track(track, options)
    n = 0
    while ctx.room.isconnected():
        t = (np.arange(480) + n) / RATE
        frame = (0.3 * 32767 * np.sin(2 * math.pi * TONE_HZ * t)).astype(np.int16)
        n += 480
        await source.capture_frame(rtc.AudioFrame(frame.tobytes(), RATE, 1, 480))


if __name__ == "__main__":
    cli.run_app(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            agent_name=os.environ.get("AGENT_NAME", ""),
            # Its health server on an ephemeral port (start's default is
            # 8081): several workers run side by side in the test suite.
            port=0,
            num_idle_processes=1,
        )
    )
