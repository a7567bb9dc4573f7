#!/usr/bin/env python3
"""LiveKit's RoomService through the official Python SDK (`livekit-api`,
protobuf on the wire) against a running switchboard, with WebSocket
participants in the room (aiohttp's client, which the SDK already needs).

CreateRoom, ListRooms, ListParticipants, GetParticipant, UpdateParticipant,
RemoveParticipant (the removed participant is told, then its socket
closes), SendData, UpdateSubscriptions (unimplemented), DeleteRoom (everyone left is told), the
errors an SDK user meets, and a token without the grant.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET. Prints one line
per step; exits 1 with the reason on the first failed assertion.
crates/switchboard/tests/sdk.rs runs it.
"""

import asyncio
import json
import os
import re
import sys
import traceback

import aiohttp
from livekit import api
from livekit.protocol.models import ParticipantInfo

ROOM = "py-lobby"


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


async def expect_error(call, code, status, what, message=None):
    try:
        result = await call
    except api.ServerError as err:
        got = f"code={err.code!r} status={err.status} message={err.message!r}"
        check(err.code == code and err.status == status,
              f"{what}: expected Twirp {code} (HTTP {status}), got {got}")
        if message is not None:
            check(err.message == message, f"{what}: expected message {message!r}, got {got}")
        return err
    raise Failure(f"{what}: expected Twirp {code} (HTTP {status}) but the call succeeded: {result}")


class Member:
    """A WebSocket participant: its socket and the JSON messages it got."""

    def __init__(self, ws, joined):
        self.ws = ws
        self.joined = joined
        self.messages = []

    async def expect(self, kind, timeout=10):
        """The next message of `kind`; audio frames are skipped."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise Failure(f"expected a {kind} message, got {msg.type} ({msg.data!r}); before: {self.messages}")
            event = json.loads(msg.data)
            self.messages.append(event)
            if event["type"] == kind:
                return event

    async def expect_close(self, timeout=10):
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return msg
            if msg.type == aiohttp.WSMsgType.TEXT:
                raise Failure(f"expected the close, got {msg.data}")


async def join(http, url, key, secret, identity, audio=True):
    token = (api.AccessToken(key, secret)
             .with_identity(identity)
             .with_name(f"{identity} name")
             .with_attributes({"team": "py"})
             .with_grants(api.VideoGrants(room_join=True, room=ROOM))
             .to_jwt())
    ws_url = re.sub(r"^http", "ws", url) + f"/rooms/{ROOM}/ws?rate=8000"
    if not audio:
        ws_url += "&audio=false"
    ws = await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
    first = await ws.receive(timeout=10)
    check(first.type == aiohttp.WSMsgType.TEXT, f"first message is JSON, got {first.type}")
    joined = json.loads(first.data)
    eq(joined["type"], "joined", "first message type")
    return Member(ws, joined)


async def main():
    url = os.environ["LIVEKIT_URL"]
    key = os.environ["LIVEKIT_API_KEY"]
    secret = os.environ["LIVEKIT_API_SECRET"]
    print(f"livekit-api {api.__version__} against {url}", flush=True)
    lk = api.LiveKitAPI(url, key, secret)
    http = aiohttp.ClientSession()
    try:
        room = await lk.room.create_room(api.CreateRoomRequest(name=ROOM, metadata="py-meta", max_participants=10))
        eq(room.name, ROOM, "CreateRoom name")
        eq(room.metadata, "py-meta", "CreateRoom metadata")
        eq(room.max_participants, 10, "CreateRoom max_participants")
        check(re.fullmatch(r"RM_[2-9A-HJ-NP-Za-km-z]{12}", room.sid), f"room sid {room.sid!r}")
        again = await lk.room.create_room(api.CreateRoomRequest(name=ROOM))
        eq(again.sid, room.sid, "CreateRoom of an existing room returns it")
        step("CreateRoom (and again: the same room)")

        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        eq([r.name for r in listed.rooms], [ROOM], "ListRooms names")
        filtered = await lk.room.list_rooms(api.ListRoomsRequest(names=["nope"]))
        eq(len(filtered.rooms), 0, "ListRooms filtered by an unknown name")
        step("ListRooms")

        agent = await join(http, url, key, secret, "agent")
        eq(agent.joined["room_sid"], room.sid, "the participant joined the created room")
        listener = await join(http, url, key, secret, "listener", audio=False)
        await agent.expect("participant_joined")

        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=ROOM))
        by_id = {p.identity: p for p in resp.participants}
        eq(sorted(by_id), ["agent", "listener"], "ListParticipants identities")
        eq(by_id["agent"].kind, ParticipantInfo.Kind.STANDARD, "a WebSocket participant's kind")
        eq(by_id["agent"].name, "agent name", "name from the token")
        eq(dict(by_id["agent"].attributes), {"team": "py"}, "attributes from the token")
        eq(by_id["agent"].is_publisher, True, "agent publishes audio")
        eq(by_id["listener"].is_publisher, False, "listener does not")
        eq(len(by_id["listener"].tracks), 0, "listener has no track")
        step("ListParticipants")

        p = await lk.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="agent"))
        eq(p.sid, agent.joined["participant"]["sid"], "GetParticipant sid")
        await expect_error(lk.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="ghost")),
                           "not_found", 404, "GetParticipant of nobody", "participant not found")
        step("GetParticipant")

        updated = await lk.room.update_participant(api.UpdateParticipantRequest(
            room=ROOM, identity="agent", metadata="busy", attributes={"sip.callStatus": "active", "team": ""}))
        eq(updated.metadata, "busy", "UpdateParticipant metadata")
        eq(dict(updated.attributes), {"sip.callStatus": "active"}, "UpdateParticipant attributes")
        seen = await listener.expect("participant_updated")
        eq(seen["participant"]["attributes"], {"sip.callStatus": "active"}, "the room sees the update")
        step("UpdateParticipant (the room sees it)")

        await lk.room.send_data(api.SendDataRequest(room=ROOM, data=b"x"))
        step("SendData is accepted")
        await expect_error(lk.room.update_subscriptions(api.UpdateSubscriptionsRequest(
            room=ROOM, identity="agent", track_sids=["TR_x"], subscribe=True)),
                           "unimplemented", 501, "UpdateSubscriptions")
        step("UpdateSubscriptions is unimplemented")

        await lk.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="agent"))
        told = await agent.expect("disconnected")
        eq(told["reason"], "participant_removed", "removed participant's reason")
        await agent.expect_close()
        left = await listener.expect("participant_left")
        eq((left["identity"], left["reason"]), ("agent", "participant_removed"), "the others see it leave")
        await expect_error(lk.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="agent")),
                           "not_found", 404, "RemoveParticipant twice", "participant not found")
        step("RemoveParticipant: disconnected, then the socket closes")

        other = api.LiveKitAPI(url, key, secret)
        try:
            # A roomAdmin token for another room: LiveKit's answer.
            token = api.AccessToken(key, secret).with_grants(api.VideoGrants(room_admin=True, room="elsewhere")).to_jwt()
            await expect_error(
                other.room._client.request("RoomService", "ListParticipants",
                                           api.ListParticipantsRequest(room=ROOM),
                                           {"Authorization": f"Bearer {token}"},
                                           api.ListParticipantsResponse),
                "unauthenticated", 401, "roomAdmin for another room", "permissions denied")
        finally:
            await other.aclose()
        step("roomAdmin for another room is refused")

        await lk.room.delete_room(api.DeleteRoomRequest(room=ROOM))
        told = await listener.expect("disconnected")
        eq(told["reason"], "room_deleted", "room deletion reason")
        await listener.expect_close()
        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        eq(len(listed.rooms), 0, "no room after DeleteRoom")
        await expect_error(lk.room.delete_room(api.DeleteRoomRequest(room=ROOM)),
                           "not_found", 404, "DeleteRoom twice", "room not found")
        step("DeleteRoom: everyone is told, the room is gone")
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
    print("all Python room service checks passed", flush=True)
