#!/usr/bin/env python3
"""The LiveKit SIP API through the official Python SDK (`livekit-api`,
protobuf on the wire) against a running switchboard.

Runs the examples of LiveKit's inbound and outbound trunk guides (seeds 002
and 003) and the API reference (seed 000) as an SDK user would write them,
then the failures a user meets: conflicts, invalid trunks and rules, tokens
without the grant or out of date, CreateSIPParticipant before outbound calls
exist. Error codes and texts are LiveKit's (reference sections 2.3 and 3).

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, and a server with
no trunks or rules yet. Prints one line per step; exits 1 with the reason on
the first failed assertion. crates/switchboard/tests/sdk.rs runs it.
"""

import asyncio
import datetime
import os
import re
import sys
import traceback
import warnings

from livekit import api
from livekit.protocol.models import ListUpdate

# The guides call a few methods the SDK has since renamed; they still work and
# the examples are run as written, so their deprecation notices are noise.
warnings.simplefilter("ignore", DeprecationWarning)

# LiveKit IDs: a prefix and 12 characters of guid's base-57 alphabet.
ID_CHARS = "[2-9A-HJ-NP-Za-km-z]{12}"

SECURITY_TEXT = (
    "for security, one of the fields must be set: "
    "AuthUsername+AuthPassword, AllowedAddresses or Numbers"
)
DENIED_TEXT = "permissions denied"

# What seed 003 reads from SIP_AUTH_USERNAME / SIP_AUTH_PASSWORD.
SIP_AUTH_USERNAME = "telnyx-user"
SIP_AUTH_PASSWORD = "telnyx-pass"


class Failure(Exception):
    """A failed assertion: the message says what was expected and what came."""


def check(condition, what):
    if not condition:
        raise Failure(what)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def as_listed(trunk):
    """A trunk as Get and List show it: switchboard leaves auth_password
    empty there (api.return_passwords, off by default)."""
    shown = type(trunk)()
    shown.CopyFrom(trunk)
    shown.auth_password = ""
    return shown


def check_id(value, prefix, what):
    if not re.fullmatch(prefix + ID_CHARS, value):
        raise Failure(f"{what}: expected an ID {prefix}<12 base-57 chars>, got {value!r}")


def go_list(items):
    """A list as LiveKit prints it in conflict texts (Go's %q), or <any>."""
    return "[" + " ".join(f'"{n}"' for n in items) + "]" if items else "<any>"


def trunk_conflict(candidate, stored, allowed_number=None):
    """LiveKit's inbound trunk conflict text. `candidate` and `stored` are
    (ID, numbers) pairs, ID "" for a trunk being created. LiveKit names the
    later trunk (in ID order, a new one last) first, with its numbers."""
    (cid, cnums), (sid, snums) = candidate, stored
    if cid == "" or cid > sid:
        first, first_numbers, second = cid or "<new>", cnums, sid
    else:
        first, first_numbers, second = sid, snums, cid
    text = f'Conflicting inbound SIP Trunks: "{first}" and "{second}", using the same number(s) {go_list(first_numbers)}'
    if allowed_number is None:
        return text + " without AllowedNumbers set"
    return text + f' and AllowedNumber "{allowed_number}"'


async def expect_error(call, code, status, what, message=None, messages=None, pattern=None):
    """Awaits `call`, which must fail with this Twirp code and HTTP status,
    and with exactly `message` (or one of `messages`, or a match of
    `pattern`) as the text the SDK surfaces."""
    try:
        result = await call
    except api.ServerError as err:
        got = f"code={err.code!r} status={err.status} message={err.message!r} meta={err.metadata}"
        check(err.code == code and err.status == status,
              f"{what}: expected Twirp {code} (HTTP {status}), got {got}")
        if message is not None:
            check(err.message == message, f"{what}: expected message {message!r}, got {got}")
        if messages is not None:
            check(err.message in messages,
                  f"{what}: expected message one of {sorted(messages)!r}, got {got}")
        if pattern is not None:
            check(re.search(pattern, err.message) is not None,
                  f"{what}: expected message matching /{pattern}/, got {got}")
        return err
    raise Failure(f"{what}: expected Twirp {code} (HTTP {status}) but the call succeeded: {result}")


def step(name):
    print(f"ok   {name}", flush=True)


class Run:
    def __init__(self, lk, url, key, secret):
        self.lk = lk
        self.sip = lk.sip
        self.url = url
        self.key = key
        self.secret = secret

    async def inbound_ids(self, **filters):
        resp = await self.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest(**filters))
        return [t.sip_trunk_id for t in resp.items]

    async def inbound(self, trunk_id):
        resp = await self.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest(trunk_ids=[trunk_id]))
        eq(len(resp.items), 1, f"ListSIPInboundTrunk trunk_ids=[{trunk_id}] item count")
        return resp.items[0]

    async def outbound(self, trunk_id):
        resp = await self.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest(trunk_ids=[trunk_id]))
        eq(len(resp.items), 1, f"ListSIPOutboundTrunk trunk_ids=[{trunk_id}] item count")
        return resp.items[0]

    async def rule(self, rule_id):
        resp = await self.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest(dispatch_rule_ids=[rule_id]))
        eq(len(resp.items), 1, f"ListSIPDispatchRule dispatch_rule_ids=[{rule_id}] item count")
        return resp.items[0]

    async def rule_ids(self, **filters):
        resp = await self.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest(**filters))
        return [r.sip_dispatch_rule_id for r in resp.items]

    # -- seed 002: inbound trunks ------------------------------------------

    async def inbound_trunks(self):
        # "Inbound trunk example": Krisp on, calls to +1-510-555-0100.
        trunk = api.SIPInboundTrunkInfo(
            name="My trunk",
            numbers=["+15105550100"],
            krisp_enabled=True,
        )
        request = api.CreateSIPInboundTrunkRequest(trunk=trunk)
        a = await self.sip.create_sip_inbound_trunk(request)
        check_id(a.sip_trunk_id, "ST_", "created inbound trunk ID")
        eq(a.name, "My trunk", "inbound trunk name")
        eq(list(a.numbers), ["+15105550100"], "inbound trunk numbers")
        eq(a.krisp_enabled, True, "inbound trunk krisp_enabled")
        eq(list(a.allowed_numbers), [], "inbound trunk allowed_numbers")
        eq(list(a.allowed_addresses), [], "inbound trunk allowed_addresses")
        eq((a.metadata, a.auth_username, a.auth_password), ("", "", ""), "unset inbound fields")
        self.a = a
        step("002 inbound trunk example (krisp_enabled)")

        # "Accepting calls from specific phone numbers". Same number as A, but
        # A has no allowed numbers, so LiveKit's conflict keys differ: allowed.
        trunk = api.SIPInboundTrunkInfo(
            name="My trunk",
            numbers=["+15105550100"],
            allowed_numbers=["+13105550100", "+17145550100"],
        )
        b = await self.sip.create_sip_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=trunk))
        check_id(b.sip_trunk_id, "ST_", "allowed-numbers trunk ID")
        check(b.sip_trunk_id != a.sip_trunk_id, "two trunks got the same ID")
        eq(list(b.allowed_numbers), ["+13105550100", "+17145550100"], "allowed_numbers")
        eq(b.krisp_enabled, False, "krisp_enabled not asked for")
        self.b = b
        step("002 allowed_numbers example")

        # "Accepting calls to any phone number": no numbers, so auth is needed.
        trunk = api.SIPInboundTrunkInfo(
            name="Any number",
            numbers=[],
            auth_username="carrier-user",
            auth_password="carrier-pass",
        )
        c = await self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=trunk))
        check_id(c.sip_trunk_id, "ST_", "any-number trunk ID")
        eq(list(c.numbers), [], "any-number trunk numbers")
        eq((c.auth_username, c.auth_password), ("carrier-user", "carrier-pass"), "auth fields")
        self.c = c
        step("002 accept any number with auth")

        # "List inbound trunks".
        rules = await self.sip.list_sip_inbound_trunk(api.ListSIPInboundTrunkRequest())
        by_id = {t.sip_trunk_id: t for t in rules.items}
        eq(sorted(by_id), sorted([a.sip_trunk_id, b.sip_trunk_id, c.sip_trunk_id]), "listed inbound trunk IDs")
        for created in (a, b, c):
            eq(by_id[created.sip_trunk_id], as_listed(created), f"listed trunk {created.sip_trunk_id}")
        eq(sorted(await self.inbound_ids(numbers=["+15105550100"])),
           sorted([a.sip_trunk_id, b.sip_trunk_id, c.sip_trunk_id]),
           "numbers filter keeps the trunks on that number and the any-number trunk")
        eq(await self.inbound_ids(numbers=["+19995550000"]), [c.sip_trunk_id],
           "numbers filter for an unknown number keeps only the any-number trunk")
        eq(await self.inbound_ids(trunk_ids=[b.sip_trunk_id]), [b.sip_trunk_id], "trunk_ids filter")
        outbound = await self.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        eq(list(outbound.items), [], "outbound list while only inbound trunks exist")
        step("002 list inbound trunks (all, numbers filter, trunk_ids filter)")

    async def inbound_failures(self):
        a, b, c = self.a, self.b, self.c
        # Two any-number trunks without allowed numbers conflict, whatever
        # their addresses or auth.
        await expect_error(
            self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
                name="Second any-number trunk", allowed_addresses=["203.0.113.0/24"]))),
            "invalid_argument", 400, "second any-number trunk",
            message=trunk_conflict(("", []), (c.sip_trunk_id, c.numbers)))
        await expect_error(
            self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
                name="Same number", numbers=["+15105550100"], auth_username="u", auth_password="p"))),
            "invalid_argument", 400, "second trunk on +15105550100 without allowed numbers",
            message=trunk_conflict(("", ["+15105550100"]), (a.sip_trunk_id, a.numbers)))
        # Numbers are compared normalised.
        await expect_error(
            self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
                name="Same number, formatted", numbers=["+1 (510) 555-0100"]))),
            "invalid_argument", 400, "trunk on '+1 (510) 555-0100' (normalises to A's number)",
            message=trunk_conflict(("", ["+1 (510) 555-0100"]), (a.sip_trunk_id, a.numbers)))
        await expect_error(
            self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
                name="Same caller", numbers=["+15105550100"], allowed_numbers=["+17145550100"]))),
            "invalid_argument", 400, "trunk on +15105550100 allowing a caller B allows",
            message=trunk_conflict(("", ["+15105550100"]), (b.sip_trunk_id, b.numbers), "+17145550100"))
        eq(sorted(await self.inbound_ids()), sorted([a.sip_trunk_id, b.sip_trunk_id, c.sip_trunk_id]),
           "inbound trunks after refused creates (nothing half-written)")
        step("conflicting inbound trunks refused with LiveKit's texts")

        # A disjoint caller on the same number is fine; delete it again.
        d = await self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
            name="Other caller", numbers=["+15105550100"], allowed_numbers=["+19995550123"])))
        deleted = await self.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=d.sip_trunk_id))
        eq(deleted.sip_trunk_id, d.sip_trunk_id, "DeleteSIPTrunk returns the trunk ID")
        check(d.sip_trunk_id not in await self.inbound_ids(), "deleted trunk still listed")
        step("same number with a disjoint allowed caller accepted, then deleted")

        for trunk, what in (
            (api.SIPInboundTrunkInfo(name="Open trunk"), "no numbers, auth or addresses"),
            (api.SIPInboundTrunkInfo(name="Open trunk", allowed_numbers=["+13105550100"]),
             "only allowed_numbers"),
        ):
            await expect_error(
                self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=trunk)),
                "invalid_argument", 400, f"inbound trunk with {what}", message=SECURITY_TEXT)
        eq(len(await self.inbound_ids()), 3, "inbound trunk count after refused creates")
        step("inbound trunk with neither numbers nor auth nor addresses refused")

    async def inbound_updates(self):
        a, b, c = self.a, self.b, self.c
        # "Update specific fields of an inbound trunk", on B (whose allowed
        # numbers the example sets anyway, so no conflict arises).
        trunk = await self.sip.update_inbound_trunk_fields(
            trunk_id=b.sip_trunk_id,
            numbers=ListUpdate(add=["+15105550100"]),  # Add to existing list
            allowed_numbers=["+13105550100", "+17145550100"],  # Replace existing list
            name="My updated trunk",
        )
        eq(trunk.sip_trunk_id, b.sip_trunk_id, "updated trunk ID")
        eq(trunk.name, "My updated trunk", "updated name")
        eq(list(trunk.numbers), ["+15105550100"], "adding a number already there keeps one copy")
        eq(list(trunk.allowed_numbers), ["+13105550100", "+17145550100"], "allowed_numbers set")
        eq(await self.inbound(b.sip_trunk_id), as_listed(trunk), "listed trunk after the update")
        step("002 update fields example (ListUpdate add, list set, name)")

        tid = a.sip_trunk_id
        t = await self.sip.update_inbound_trunk_fields(tid, metadata="m1")
        eq((t.name, t.metadata, t.krisp_enabled, list(t.numbers)),
           ("My trunk", "m1", True, ["+15105550100"]), "only metadata changes")
        t = await self.sip.update_inbound_trunk_fields(tid, numbers=ListUpdate(add=["+15105550111"]))
        eq(list(t.numbers), ["+15105550100", "+15105550111"], "ListUpdate add appends")
        t = await self.sip.update_inbound_trunk_fields(tid, numbers=ListUpdate(remove=["+15105550100"]))
        eq(list(t.numbers), ["+15105550111"], "ListUpdate remove")
        t = await self.sip.update_inbound_trunk_fields(
            tid, numbers=ListUpdate(set=["+15105550122", "+15105550133"]))
        eq(list(t.numbers), ["+15105550122", "+15105550133"], "ListUpdate set replaces")
        t = await self.sip.update_inbound_trunk_fields(
            tid, numbers=ListUpdate(add=["+15105550144"], remove=["+15105550122"]))
        eq(list(t.numbers), ["+15105550133", "+15105550144"], "ListUpdate add and remove together")
        t = await self.sip.update_inbound_trunk_fields(
            tid, allowed_addresses=ListUpdate(add=["198.51.100.7", "203.0.113.0/24"]),
            auth_username="a-user", auth_password="a-pass")
        eq(list(t.allowed_addresses), ["198.51.100.7", "203.0.113.0/24"], "allowed_addresses add")
        eq((t.auth_username, t.auth_password), ("a-user", "a-pass"), "auth set by update")
        eq((t.name, t.metadata, t.krisp_enabled), ("My trunk", "m1", True), "untouched fields kept")
        self.a = t
        step("ListUpdate set/add/remove on numbers and allowed_addresses; scalar fields")

        before = await self.inbound(tid)
        await expect_error(
            self.sip.update_inbound_trunk_fields(tid, numbers=ListUpdate(set=["+1"], add=["+2"])),
            "invalid_argument", 400, "ListUpdate with set and add",
            message="cannot set and change the list at the same time")
        await expect_error(
            self.sip.update_inbound_trunk_fields(tid, numbers=ListUpdate(add=[""])),
            "invalid_argument", 400, "ListUpdate adding an empty element",
            message="empty element in the list")
        e = await self.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(
            name="E", numbers=["+15105550155"])))
        await expect_error(
            self.sip.update_inbound_trunk_fields(e.sip_trunk_id, numbers=ListUpdate(add=["+15105550133"])),
            "invalid_argument", 400, "update giving E a number A has",
            message=trunk_conflict((e.sip_trunk_id, ["+15105550155", "+15105550133"]), (tid, before.numbers)))
        await expect_error(
            self.sip.update_inbound_trunk_fields(
                e.sip_trunk_id, numbers=ListUpdate(remove=["+15105550155"])),
            "invalid_argument", 400, "update leaving E with no numbers, auth or addresses",
            message=SECURITY_TEXT)
        eq(await self.inbound(e.sip_trunk_id), as_listed(e), "E after refused updates")
        eq(await self.inbound(tid), as_listed(before), "A after refused updates")
        await self.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=e.sip_trunk_id))
        await expect_error(
            self.sip.update_inbound_trunk_fields("ST_nonexistent", name="x"),
            "not_found", 404, "update of an unknown trunk",
            message="requested sip trunk does not exist")
        step("invalid ListUpdates, conflicting and invalid updates refused; unknown trunk not_found")

        # "Replace inbound trunk": first give B fields the replacement lacks.
        await self.sip.update_inbound_trunk_fields(
            b.sip_trunk_id, metadata="before replace", allowed_addresses=["192.0.2.1"])
        trunk = api.SIPInboundTrunkInfo(
            numbers=["+15105550100"],
            allowed_numbers=["+13105550100", "+17145550100"],
            name="My replaced inbound trunk",
        )
        trunk = await self.sip.update_inbound_trunk(b.sip_trunk_id, trunk)
        eq(trunk.sip_trunk_id, b.sip_trunk_id, "replaced trunk keeps its ID")
        eq(trunk.name, "My replaced inbound trunk", "replaced name")
        eq(list(trunk.numbers), ["+15105550100"], "replaced numbers")
        eq(list(trunk.allowed_numbers), ["+13105550100", "+17145550100"], "replaced allowed_numbers")
        eq((trunk.metadata, list(trunk.allowed_addresses)), ("", []), "fields absent from the replacement are cleared")
        eq(await self.inbound(b.sip_trunk_id), as_listed(trunk), "listed trunk after replace")
        self.b = trunk
        await expect_error(
            self.sip.update_inbound_trunk(b.sip_trunk_id, api.SIPInboundTrunkInfo(
                sip_trunk_id=c.sip_trunk_id, name="x", numbers=["+15105550177"])),
            "invalid_argument", 400, "replace whose info carries another trunk's ID",
            message="trunk id in the info must be empty or match the id in the update")
        await expect_error(
            self.sip.update_inbound_trunk(b.sip_trunk_id, api.SIPInboundTrunkInfo(name="open")),
            "invalid_argument", 400, "replace with neither numbers nor auth nor addresses",
            message=SECURITY_TEXT)
        eq(await self.inbound(b.sip_trunk_id), as_listed(trunk), "B after refused replaces")
        step("002 replace inbound trunk example; invalid replaces refused")

    # -- seed 003: outbound trunks -----------------------------------------

    async def outbound_trunks(self):
        # "Create an outbound trunk" (Telnyx, username and password).
        trunk = api.SIPOutboundTrunkInfo(
            name="My trunk",
            address="sip.telnyx.com",
            numbers=["+12135550100"],
            auth_username=SIP_AUTH_USERNAME,
            auth_password=SIP_AUTH_PASSWORD,
        )
        request = api.CreateSIPOutboundTrunkRequest(trunk=trunk)
        o1 = await self.sip.create_sip_outbound_trunk(request)
        check_id(o1.sip_trunk_id, "ST_", "outbound trunk ID")
        eq((o1.name, o1.address, list(o1.numbers)), ("My trunk", "sip.telnyx.com", ["+12135550100"]),
           "outbound trunk name, address, numbers")
        eq((o1.auth_username, o1.auth_password), (SIP_AUTH_USERNAME, SIP_AUTH_PASSWORD), "outbound auth")
        eq(o1.transport, api.SIPTransport.SIP_TRANSPORT_AUTO, "default transport")
        eq(o1.destination_country, "", "destination_country unset")
        step("003 create outbound trunk example")

        # "Calls from any phone number".
        o2 = await self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=api.SIPOutboundTrunkInfo(
            name="My outbound trunk", address="my-trunk.pstn.twilio.com", numbers=["*"])))
        eq(list(o2.numbers), ["*"], "wildcard outbound numbers")
        o3 = await self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=api.SIPOutboundTrunkInfo(
            name="TCP trunk", address="192.0.2.10:5070", numbers=["+441632960000"],
            transport=api.SIPTransport.SIP_TRANSPORT_TCP, destination_country="GB",
            headers={"X-Switchboard": "test"}, metadata='{"is_internal": true}')))
        eq((o3.transport, o3.destination_country, dict(o3.headers), o3.metadata),
           (api.SIPTransport.SIP_TRANSPORT_TCP, "GB", {"X-Switchboard": "test"}, '{"is_internal": true}'),
           "transport, country, headers, metadata")
        self.o1, self.o2, self.o3 = o1, o2, o3
        step("003 outbound trunk from any number ('*'); TCP trunk with country and headers")

        # "List outbound trunks".
        rules = await self.sip.list_sip_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        by_id = {t.sip_trunk_id: t for t in rules.items}
        eq(sorted(by_id), sorted([o1.sip_trunk_id, o2.sip_trunk_id, o3.sip_trunk_id]), "listed outbound IDs")
        for created in (o1, o2, o3):
            eq(by_id[created.sip_trunk_id], as_listed(created), f"listed outbound trunk {created.sip_trunk_id}")
        eq(await self.outbound(o2.sip_trunk_id), as_listed(o2), "outbound trunk_ids filter")
        check(o1.sip_trunk_id not in await self.inbound_ids(), "outbound trunk listed as inbound")
        step("003 list outbound trunks")

        # "Update specific fields of an outbound trunk".
        trunk = await self.sip.update_sip_outbound_trunk_fields(
            trunk_id=o1.sip_trunk_id,
            name="My updated outbound trunk",
            address="sip.telnyx.com",
            numbers=ListUpdate(
                add=["+15225550101"],
                remove=["+15105550100"],
            ),  # Add and remove specific numbers from the trunk
        )
        eq(trunk.name, "My updated outbound trunk", "updated outbound name")
        eq(list(trunk.numbers), ["+12135550100", "+15225550101"], "outbound numbers after add/remove")
        eq((trunk.auth_username, trunk.auth_password), (SIP_AUTH_USERNAME, SIP_AUTH_PASSWORD), "auth kept")
        trunk = await self.sip.update_outbound_trunk_fields(
            o1.sip_trunk_id, numbers=ListUpdate(remove=["+12135550100"]),
            transport=api.SIPTransport.SIP_TRANSPORT_UDP)
        eq(list(trunk.numbers), ["+15225550101"], "outbound ListUpdate remove")
        eq(trunk.transport, api.SIPTransport.SIP_TRANSPORT_UDP, "transport updated")
        eq(trunk.name, "My updated outbound trunk", "name kept")
        eq(await self.outbound(o1.sip_trunk_id), as_listed(trunk), "listed outbound trunk after updates")
        await expect_error(
            self.sip.update_outbound_trunk_fields(o1.sip_trunk_id, numbers=ListUpdate(remove=["+15225550101"])),
            "invalid_argument", 400, "update removing the last outbound number",
            message="no trunk numbers specified")
        await expect_error(
            self.sip.update_outbound_trunk_fields(o1.sip_trunk_id, address="sip:carrier.example.com"),
            "invalid_argument", 400, "update setting a SIP URI address",
            pattern=r"should be a hostname or IP, not SIP URI")
        eq(await self.outbound(o1.sip_trunk_id), as_listed(trunk), "outbound trunk after refused updates")
        step("003 update outbound fields example; ListUpdate remove, transport; invalid updates refused")

        # "Replace an outbound trunk".
        trunk = api.SIPOutboundTrunkInfo(
            address="sip.telnyx.com",
            numbers=["+15105550100"],
            name="My replaced outbound trunk",
            transport=api.SIPTransport.SIP_TRANSPORT_AUTO,
            auth_username=SIP_AUTH_USERNAME,
            auth_password=SIP_AUTH_PASSWORD,
        )
        trunk = await self.sip.update_sip_outbound_trunk(o1.sip_trunk_id, trunk)
        eq((trunk.sip_trunk_id, trunk.name, list(trunk.numbers), trunk.transport),
           (o1.sip_trunk_id, "My replaced outbound trunk", ["+15105550100"], api.SIPTransport.SIP_TRANSPORT_AUTO),
           "replaced outbound trunk")
        eq(await self.outbound(o1.sip_trunk_id), as_listed(trunk), "listed outbound trunk after replace")
        self.o1 = trunk
        step("003 replace outbound trunk example")

        for address in ("sip:sip.telnyx.com", "sips:sip.telnyx.com", "user@sip.telnyx.com"):
            await expect_error(
                self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=api.SIPOutboundTrunkInfo(
                    name="URI trunk", address=address, numbers=["+15105550100"]))),
                "invalid_argument", 400, f"outbound address {address!r}",
                pattern=r"should be a hostname or IP, not SIP URI")
        await expect_error(
            self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=api.SIPOutboundTrunkInfo(
                name="No numbers", address="sip.telnyx.com"))),
            "invalid_argument", 400, "outbound trunk without numbers", message="no trunk numbers specified")
        await expect_error(
            self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=api.SIPOutboundTrunkInfo(
                name="No address", numbers=["+15105550100"]))),
            "invalid_argument", 400, "outbound trunk without address", message="no outbound address specified")
        resp = await self.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        eq(len(resp.items), 3, "outbound trunk count after refused creates")
        step("outbound address given as a SIP URI (and other invalid trunks) refused")

    # -- seed 000: dispatch rules ------------------------------------------

    async def dispatch_rules(self):
        a, b, c = self.a, self.b, self.c
        direct = await self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            dispatch_rule=api.SIPDispatchRuleInfo(
                rule=api.SIPDispatchRule(dispatch_rule_direct=api.SIPDispatchRuleDirect(
                    room_name="open-room", pin="1234")),
                trunk_ids=[a.sip_trunk_id],
                name="Direct",
                metadata="direct-meta",
                attributes={"team": "sales"},
            )))
        check_id(direct.sip_dispatch_rule_id, "SDR_", "direct rule ID")
        eq(direct.rule.WhichOneof("rule"), "dispatch_rule_direct", "direct rule kind")
        eq((direct.rule.dispatch_rule_direct.room_name, direct.rule.dispatch_rule_direct.pin),
           ("open-room", "1234"), "direct room and pin")
        eq((list(direct.trunk_ids), direct.name, direct.metadata, dict(direct.attributes)),
           ([a.sip_trunk_id], "Direct", "direct-meta", {"team": "sales"}), "direct rule fields")

        individual = await self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            dispatch_rule=api.SIPDispatchRuleInfo(
                rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(
                    room_prefix="call-")),
                trunk_ids=[a.sip_trunk_id],
                name="Individual",
            )))
        eq(individual.rule.WhichOneof("rule"), "dispatch_rule_individual", "individual rule kind")
        eq(individual.rule.dispatch_rule_individual.room_prefix, "call-", "individual prefix")

        callee = await self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            dispatch_rule=api.SIPDispatchRuleInfo(
                rule=api.SIPDispatchRule(dispatch_rule_callee=api.SIPDispatchRuleCallee(
                    room_prefix="callee", randomize=True)),
                inbound_numbers=["+13105550100"],
                hide_phone_number=True,
                name="Callee",
            )))
        eq(callee.rule.WhichOneof("rule"), "dispatch_rule_callee", "callee rule kind")
        eq((callee.rule.dispatch_rule_callee.room_prefix, callee.rule.dispatch_rule_callee.randomize),
           ("callee", True), "callee prefix and randomize")
        eq((list(callee.trunk_ids), list(callee.inbound_numbers), callee.hide_phone_number),
           ([], ["+13105550100"], True), "callee rule scope")

        # The request's legacy top-level fields, which older code still sends.
        legacy = await self.sip.create_sip_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            rule=api.SIPDispatchRule(dispatch_rule_direct=api.SIPDispatchRuleDirect(room_name="legacy-room")),
            trunk_ids=[c.sip_trunk_id],
            name="Legacy",
        ))
        eq((legacy.rule.dispatch_rule_direct.room_name, list(legacy.trunk_ids), legacy.name),
           ("legacy-room", [c.sip_trunk_id], "Legacy"), "rule created from legacy request fields")
        self.rules = {"direct": direct, "individual": individual, "callee": callee, "legacy": legacy}
        step("dispatch rules created: direct (pin), individual, callee, legacy request fields")

        resp = await self.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())
        by_id = {r.sip_dispatch_rule_id: r for r in resp.items}
        eq(sorted(by_id), sorted(r.sip_dispatch_rule_id for r in self.rules.values()), "listed rule IDs")
        for r in self.rules.values():
            eq(by_id[r.sip_dispatch_rule_id], r, f"listed rule {r.name}")
        eq(sorted(await self.rule_ids(trunk_ids=[a.sip_trunk_id])),
           sorted([direct.sip_dispatch_rule_id, individual.sip_dispatch_rule_id, callee.sip_dispatch_rule_id]),
           "trunk_ids filter keeps the trunk's rules and the wildcard rule")
        eq(await self.rule_ids(dispatch_rule_ids=[individual.sip_dispatch_rule_id]),
           [individual.sip_dispatch_rule_id], "dispatch_rule_ids filter")
        step("list dispatch rules (all, trunk_ids filter, dispatch_rule_ids filter)")

        conflict = "Dispatch rule for the same trunk, inbound number, number, and PIN combination " \
                   "already exists in dispatch rule \"{}\" \"{}\""
        # The rule kind is not part of the key: an open direct rule on A
        # collides with the open individual rule on A.
        await expect_error(
            self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(dispatch_rule=api.SIPDispatchRuleInfo(
                rule=api.SIPDispatchRule(dispatch_rule_direct=api.SIPDispatchRuleDirect(room_name="other")),
                trunk_ids=[a.sip_trunk_id], name="Clash")))
            , "invalid_argument", 400, "open direct rule on the individual rule's trunk",
            message=conflict.format(individual.sip_dispatch_rule_id, "Individual"))
        await expect_error(
            self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(dispatch_rule=api.SIPDispatchRuleInfo(
                rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix="x")),
                inbound_numbers=["+13105550100"], name="Clash")))
            , "invalid_argument", 400, "wildcard rule for the callee rule's caller",
            message=conflict.format(callee.sip_dispatch_rule_id, "Callee"))
        await expect_error(
            self.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(dispatch_rule=api.SIPDispatchRuleInfo(
                trunk_ids=[b.sip_trunk_id], name="No rule"))),
            "invalid_argument", 400, "dispatch rule without a rule", message="missing rule")
        eq(len(await self.rule_ids()), 4, "rule count after refused creates")
        step("conflicting dispatch rules and a rule-less rule refused")

        rid = individual.sip_dispatch_rule_id
        r = await self.sip.update_dispatch_rule_fields(
            rid, trunk_ids=ListUpdate(add=[b.sip_trunk_id]), name="Individual A+B",
            metadata="m", attributes={"tier": "gold"})
        eq((list(r.trunk_ids), r.name, r.metadata, dict(r.attributes)),
           ([a.sip_trunk_id, b.sip_trunk_id], "Individual A+B", "m", {"tier": "gold"}), "rule after update")
        r = await self.sip.update_dispatch_rule_fields(rid, trunk_ids=ListUpdate(remove=[a.sip_trunk_id]))
        eq(list(r.trunk_ids), [b.sip_trunk_id], "rule trunk_ids after remove")
        r = await self.sip.update_dispatch_rule_fields(
            rid, trunk_ids=ListUpdate(set=[a.sip_trunk_id, b.sip_trunk_id]),
            rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(
                room_prefix="caller-", no_randomness=True)))
        eq(list(r.trunk_ids), [a.sip_trunk_id, b.sip_trunk_id], "rule trunk_ids after set")
        eq((r.rule.dispatch_rule_individual.room_prefix, r.rule.dispatch_rule_individual.no_randomness),
           ("caller-", True), "rule body replaced by update")
        eq(r.name, "Individual A+B", "name kept")
        eq(await self.rule(rid), r, "listed rule after updates")
        # Attributes are a diff: new keys merge in, an empty value deletes.
        d = await self.sip.update_dispatch_rule_fields(direct.sip_dispatch_rule_id, attributes={"tier": "gold"})
        eq(dict(d.attributes), {"team": "sales", "tier": "gold"}, "attributes merged")
        d = await self.sip.update_dispatch_rule_fields(direct.sip_dispatch_rule_id, attributes={"team": ""})
        eq(dict(d.attributes), {"tier": "gold"}, "empty attribute value deletes the key")
        # Adding trunk C collides with the open legacy rule on C.
        await expect_error(
            self.sip.update_dispatch_rule_fields(rid, trunk_ids=ListUpdate(add=[c.sip_trunk_id])),
            "invalid_argument", 400, "update moving the individual rule onto the legacy rule's trunk",
            message=conflict.format(legacy.sip_dispatch_rule_id, "Legacy"))
        eq(await self.rule(rid), r, "rule after a refused update")
        await expect_error(
            self.sip.update_dispatch_rule_fields("SDR_nonexistent", name="x"),
            "not_found", 404, "update of an unknown rule", message="requested sip dispatch rule does not exist")
        step("update dispatch rule fields (ListUpdate add/remove/set, rule, attributes diff); conflicts refused")

        replaced = await self.sip.update_dispatch_rule(direct.sip_dispatch_rule_id, api.SIPDispatchRuleInfo(
            rule=api.SIPDispatchRule(dispatch_rule_callee=api.SIPDispatchRuleCallee(room_prefix="replaced")),
            trunk_ids=[b.sip_trunk_id, c.sip_trunk_id],
            numbers=["+15105550100"],
            name="Replaced",
        ))
        eq(replaced.sip_dispatch_rule_id, direct.sip_dispatch_rule_id, "replaced rule keeps its ID")
        eq(replaced.rule.WhichOneof("rule"), "dispatch_rule_callee", "replaced rule kind")
        eq((list(replaced.trunk_ids), list(replaced.numbers), replaced.name, replaced.metadata,
            dict(replaced.attributes)),
           ([b.sip_trunk_id, c.sip_trunk_id], ["+15105550100"], "Replaced", "", {}),
           "replaced rule fields (absent ones cleared)")
        eq(await self.rule(direct.sip_dispatch_rule_id), replaced, "listed rule after replace")
        step("replace dispatch rule")

        deleted = await self.sip.delete_dispatch_rule(
            api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=callee.sip_dispatch_rule_id))
        eq(deleted, callee, "DeleteSIPDispatchRule returns the whole deleted rule")
        check(callee.sip_dispatch_rule_id not in await self.rule_ids(), "deleted rule still listed")
        await expect_error(
            self.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=callee.sip_dispatch_rule_id)),
            "not_found", 404, "deleting a deleted rule", message="requested sip dispatch rule does not exist")
        for r in (replaced, r, legacy):
            await self.sip.delete_sip_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=r.sip_dispatch_rule_id))
        eq(await self.rule_ids(), [], "rules after deleting all")
        step("delete dispatch rules of all three kinds")

    async def delete_trunks(self):
        deleted = await self.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=self.c.sip_trunk_id))
        eq(deleted.sip_trunk_id, self.c.sip_trunk_id, "DeleteSIPTrunk (inbound) returns the ID")
        eq(sorted(await self.inbound_ids()), sorted([self.a.sip_trunk_id, self.b.sip_trunk_id]),
           "inbound trunks after delete")
        deleted = await self.sip.delete_sip_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=self.o3.sip_trunk_id))
        eq(deleted.sip_trunk_id, self.o3.sip_trunk_id, "DeleteSIPTrunk (outbound) returns the ID")
        resp = await self.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        eq(sorted(t.sip_trunk_id for t in resp.items), sorted([self.o1.sip_trunk_id, self.o2.sip_trunk_id]),
           "outbound trunks after delete")
        step("delete inbound and outbound trunks")

    # -- CreateSIPParticipant ----------------------------------------------

    async def create_participant(self):
        # Seed 003's participant.json through the SDK, without waiting for
        # the answer: the callee joins the room and dialling goes on (the
        # trunk's address is not a real carrier here, so it fails later).
        # The trunk is on TEST-NET-1 (RFC 5737, never routed): no real
        # carrier is called.
        test_net = await self.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(
            trunk=api.SIPOutboundTrunkInfo(name="test-net", address="192.0.2.30",
                                           numbers=["+15105550100"])))
        request = api.CreateSIPParticipantRequest(
            sip_number="+15105550100",
            sip_trunk_id=test_net.sip_trunk_id,
            sip_call_to="+12135550100",
            room_name="open-room",
            participant_identity="sip-test",
            participant_name="Test call participant",
            wait_until_answered=False,
        )
        info = await self.sip.create_sip_participant(request)
        eq(info.participant_identity, "sip-test", "CreateSIPParticipant identity")
        eq(info.room_name, "open-room", "CreateSIPParticipant room")
        check(info.sip_call_id.startswith("SCL_"), f"sip_call_id {info.sip_call_id!r}")
        check(info.participant_id.startswith("PA_"), f"participant_id {info.participant_id!r}")
        # An inline trunk goes in the request itself: livekit-api 1.2.2's
        # outbound_trunk_config argument assigns a message field, which the
        # protobuf runtime refuses (AttributeError) before anything is sent.
        info = await self.sip.create_sip_participant(api.CreateSIPParticipantRequest(
            sip_call_to="+12135550100", room_name="open-room", sip_number="+15105550100",
            trunk=api.SIPOutboundConfig(hostname="192.0.2.1")))
        eq(info.participant_identity, "sip_+12135550100", "default identity of an outbound call")
        await self.sip.delete_sip_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=test_net.sip_trunk_id))
        step("valid CreateSIPParticipant joins the callee to the room and dials")

        invalid = [
            (dict(sip_trunk_id=self.o1.sip_trunk_id, sip_call_to="alice@example.com", room_name="r"),
             "sip_call_to with '@'", "SipCallTo should be a phone number or SIP user, not a full SIP URI"),
            (dict(sip_call_to="+12135550100", room_name="r"),
             "no trunk and no number", "missing sip trunk id and sip number"),
            (dict(sip_trunk_id=self.o1.sip_trunk_id, room_name="r"),
             "no sip_call_to", "missing sip callee number"),
            (dict(sip_trunk_id=self.o1.sip_trunk_id, sip_call_to="+12135550100"), "no room_name", None),
        ]
        for fields, what, message in invalid:
            await expect_error(self.sip.create_sip_participant(api.CreateSIPParticipantRequest(**fields)),
                               "invalid_argument", 400, f"CreateSIPParticipant with {what}", message=message)
        await expect_error(
            self.sip.create_sip_participant(api.CreateSIPParticipantRequest(
                sip_call_to="+12135550100", room_name="r", sip_number="+1555",
                trunk=api.SIPOutboundConfig(hostname="sip:sip.telnyx.com"))),
            "invalid_argument", 400, "CreateSIPParticipant with an inline trunk hostname as SIP URI")
        await expect_error(
            self.sip.create_sip_participant(api.CreateSIPParticipantRequest(
                sip_trunk_id="ST_nonexistent", sip_call_to="+12135550100", room_name="r")),
            "not_found", 404, "CreateSIPParticipant with an unknown trunk")
        step("invalid CreateSIPParticipant gets invalid_argument; unknown trunk not_found")

    # -- tokens --------------------------------------------------------------

    def client(self, token):
        return api.LiveKitAPI(self.url, token=token)

    async def with_token(self, token, call):
        lk = self.client(token)
        try:
            return await call(lk.sip)
        finally:
            await lk.aclose()

    async def tokens(self):
        list_inbound = lambda sip: sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        no_sip = api.AccessToken(self.key, self.secret).with_grants(api.VideoGrants(room_list=True)).to_jwt()
        await expect_error(self.with_token(no_sip, list_inbound),
                           "unauthenticated", 401, "list with a token without a sip grant", message=DENIED_TEXT)
        await expect_error(
            self.with_token(no_sip, lambda sip: sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
                trunk=api.SIPInboundTrunkInfo(name="denied", numbers=["+15105550199"])))),
            "unauthenticated", 401, "create with a token without a sip grant", message=DENIED_TEXT)
        eq(len(await self.inbound_ids()), 2, "inbound trunks after a denied create")
        call_only = api.AccessToken(self.key, self.secret).with_sip_grants(api.SIPGrants(call=True)).to_jwt()
        await expect_error(self.with_token(call_only, list_inbound),
                           "unauthenticated", 401, "list with only the sip.call grant", message=DENIED_TEXT)
        admin_only = api.AccessToken(self.key, self.secret).with_sip_grants(api.SIPGrants(admin=True)).to_jwt()
        await expect_error(
            self.with_token(admin_only, lambda sip: sip.create_sip_participant(api.CreateSIPParticipantRequest(
                sip_trunk_id=self.o1.sip_trunk_id, sip_call_to="+12135550100", room_name="r"))),
            "unauthenticated", 401, "CreateSIPParticipant with sip.admin but not sip.call", message=DENIED_TEXT)
        got = await self.with_token(admin_only, list_inbound)
        eq(len(got.items), 2, "list with a pre-signed admin token")
        step("tokens without the needed grant get unauthenticated 'permissions denied'")

        expired = (api.AccessToken(self.key, self.secret).with_sip_grants(api.SIPGrants(admin=True))
                   .with_ttl(datetime.timedelta(minutes=-10)).to_jwt())
        await expect_error(self.with_token(expired, list_inbound),
                           "unauthenticated", 401, "token expired 10 minutes ago", pattern=r"(?i)expired")
        # LiveKit allows a minute of clock skew.
        recent = (api.AccessToken(self.key, self.secret).with_sip_grants(api.SIPGrants(admin=True))
                  .with_ttl(datetime.timedelta(seconds=-20)).to_jwt())
        got = await self.with_token(recent, list_inbound)
        eq(len(got.items), 2, "list with a token expired 20 s ago (within the 1 min leeway)")
        forged = (api.AccessToken(self.key, "not-the-secret-but-just-as-long-0123456789")
                  .with_sip_grants(api.SIPGrants(admin=True)).to_jwt())
        await expect_error(self.with_token(forged, list_inbound),
                           "unauthenticated", 401, "token signed with the wrong secret")
        stranger = api.AccessToken("unknown-key", self.secret).with_sip_grants(api.SIPGrants(admin=True)).to_jwt()
        await expect_error(self.with_token(stranger, list_inbound),
                           "unauthenticated", 401, "token for an unknown API key")
        step("expired, forged and unknown-key tokens get unauthenticated; 1 min leeway honoured")


async def main():
    url = os.environ["LIVEKIT_URL"]
    key = os.environ["LIVEKIT_API_KEY"]
    secret = os.environ["LIVEKIT_API_SECRET"]
    print(f"livekit-api {api.__version__} against {url}", flush=True)
    lk = api.LiveKitAPI(url, key, secret)
    run = Run(lk, url, key, secret)
    try:
        await run.inbound_trunks()
        await run.inbound_failures()
        await run.inbound_updates()
        await run.outbound_trunks()
        await run.dispatch_rules()
        await run.create_participant()
        await run.delete_trunks()
        await run.tokens()
    finally:
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
    print("all Python SDK checks passed", flush=True)
