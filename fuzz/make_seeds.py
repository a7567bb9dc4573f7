#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/.

The RFC 4475 torture messages are copied from shared/corpus/rfc4475 (when
that folder is there; the copies are committed, so this is only needed to
refresh them). Everything else is written from the literals below. Run from
anywhere: `python3 fuzz/make_seeds.py [RFC4475_DIR]`.
"""

import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(text):
    return text.strip("\n").replace("\n", "\r\n") + "\r\n"


SDP_OFFER = crlf("""
v=0
o=carrier 1234 1 IN IP4 198.51.100.5
s=-
c=IN IP4 198.51.100.5
t=0 0
m=audio 30000 RTP/AVP 0 8 9 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")

INVITE = crlf("""
INVITE sip:+15550200@gw.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: <sip:+15550200@gw.example.com>
From: "Alice" <sip:+15550100@carrier.example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314159 INVITE
Contact: <sip:+15550100@198.51.100.5:5060>
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE
Supported: timer, replaces
Session-Expires: 1800;refresher=uac
Content-Type: application/sdp
Content-Length: %d
""")
INVITE = (INVITE % len(SDP_OFFER)) + "\r\n" + SDP_OFFER

ACK = crlf("""
ACK sip:+15550200@gw.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: <sip:+15550200@gw.example.com>;tag=fuzz-tag
From: "Alice" <sip:+15550100@carrier.example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314159 ACK
Content-Length: 0
""") + "\r\n"

CANCEL = crlf("""
CANCEL sip:+15550200@gw.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: <sip:+15550200@gw.example.com>
From: "Alice" <sip:+15550100@carrier.example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314159 CANCEL
Content-Length: 0
""") + "\r\n"

BYE = crlf("""
BYE sip:gw@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKbye1
Max-Forwards: 70
To: <sip:+15550200@gw.example.com>;tag=fuzz-tag
From: "Alice" <sip:+15550100@carrier.example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314160 BYE
Content-Length: 0
""") + "\r\n"

OPTIONS = crlf("""
OPTIONS sip:gw.example.com SIP/2.0
Via: SIP/2.0/TCP 198.51.100.5:5060;branch=z9hG4bKopt1
Max-Forwards: 70
To: <sip:gw.example.com>
From: <sip:ping@carrier.example.net>;tag=abc
Call-ID: opt1@198.51.100.5
CSeq: 1 OPTIONS
Accept: application/sdp
Content-Length: 0
""") + "\r\n"

REGISTER = crlf("""
REGISTER sip:gw.example.com SIP/2.0
Via: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKreg1
Max-Forwards: 70
To: <sip:alice@gw.example.com>
From: <sip:alice@gw.example.com>;tag=reg1
Call-ID: reg1@2001:db8::5
CSeq: 2 REGISTER
Contact: <sip:alice@[2001:db8::5]:5060;transport=udp>;expires=3600
Authorization: Digest username="alice", realm="sip.example.com", nonce="abc", uri="sip:gw.example.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"
Content-Length: 0
""") + "\r\n"

INFO = crlf("""
INFO sip:gw@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKinfo1
Max-Forwards: 70
To: <sip:+15550200@gw.example.com>;tag=fuzz-tag
From: <sip:+15550100@carrier.example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314161 INFO
Content-Type: application/dtmf-relay
Content-Length: 24
""") + "\r\nSignal=5\r\nDuration=160\r\n"

RESPONSE_200 = crlf("""
SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-out1;received=198.51.100.5
To: <sip:+15550100@carrier.example.net>;tag=8321234356
From: <sip:+15550200@gw.example.com>;tag=9fxced76sl
Call-ID: 3848276298220188511@gw.example.com
CSeq: 1 INVITE
Contact: <sip:+15550100@198.51.100.5>
Record-Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>
Content-Length: 0
""") + "\r\n"

RESPONSE_401 = crlf("""
SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-out2
To: <sip:+15550100@carrier.example.net>;tag=1
From: <sip:+15550200@gw.example.com>;tag=2
Call-ID: out2@gw.example.com
CSeq: 1 INVITE
WWW-Authenticate: Digest realm="carrier.example.net", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth,auth-int", algorithm=SHA-256, opaque="5ccc069c403ebaf9f0171e9517f40e41"
Content-Length: 0
""") + "\r\n"

COMPACT = crlf("""
INVITE tel:+15550200;phone-context=+1 SIP/2.0
v: SIP/2.0/UDP 198.51.100.5;branch=z9hG4bKcompact
t: <tel:+15550200>
f: <sip:anon@anonymous.invalid>;tag=x
i: compact@198.51.100.5
CSeq: 1 INVITE
m: <sip:198.51.100.5>
Max-Forwards: 10
c: application/sdp
l: 0
""") + "\r\n"


def sip_seeds(rfc4475_dir):
    os.makedirs(os.path.join(CORPUS, "sip_parse"), exist_ok=True)
    if rfc4475_dir and os.path.isdir(rfc4475_dir):
        for name in sorted(os.listdir(rfc4475_dir)):
            if name.endswith(".dat"):
                shutil.copyfile(os.path.join(rfc4475_dir, name),
                            os.path.join(CORPUS, "sip_parse", "rfc4475-" + name))
    for name, msg in [("invite-sdp", INVITE), ("ack", ACK), ("cancel", CANCEL),
                      ("bye", BYE), ("options-tcp", OPTIONS), ("register-auth", REGISTER),
                      ("info-dtmf", INFO), ("200-ok", RESPONSE_200),
                      ("401-challenge", RESPONSE_401), ("compact-tel", COMPACT)]:
        write("sip_parse", name, msg)
    # A TCP stream: two messages, a keep-alive, and a truncated third.
    write("sip_parse", "stream-two-and-ping", "\x40" + OPTIONS + BYE + "\r\n\r\n" + INVITE[:200])

    sep = "\n%%\n"
    for name, status, parts in [
        ("invite-ack", 3, [INVITE, ACK]),
        ("invite-cancel", 1, [INVITE, CANCEL, ACK]),
        ("invite-busy-ack", 5, [INVITE, ACK]),
        ("options-options", 0, [OPTIONS, OPTIONS]),
        ("register", 4, [REGISTER]),
        ("bye-info", 3, [BYE, INFO]),
        ("responses", 0, [RESPONSE_200, RESPONSE_401]),
        ("retransmit", 2, [INVITE, INVITE, CANCEL]),
        ("torture-wsinv", 3, [open(os.path.join(rfc4475_dir, "wsinv.dat"), "rb").read().decode("latin-1")
                              if rfc4475_dir and os.path.isdir(rfc4475_dir) else INVITE]),
    ]:
        write("sip_endpoint", name, chr(status) + sep.join(parts))


def sdp_seeds():
    srtp = SDP_OFFER.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv\r\n",
        "a=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"
        "a=crypto:2 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw=\r\n"
        "a=crypto:3 AES_256_CM_HMAC_SHA1_32 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v KDR=0\r\n")
    opus = crlf("""
v=0
o=- 4611731400430051337 2 IN IP4 127.0.0.1
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 5004 RTP/AVP 111 110 0
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:110 telephone-event/48000
a=rtpmap:0 PCMU/8000
a=rtcp:5005 IN IP4 192.168.1.20
a=rtcp-mux
a=sendonly
""")
    ipv6 = crlf("""
v=0
o=x 1 1 IN IP6 2001:db8::1
s=x
c=IN IP6 2001:db8::1
t=0 0
m=video 4000 RTP/AVP 96
a=rtpmap:96 H264/90000
m=audio 0 RTP/AVP 0
m=audio 4002 RTP/AVP 8 101
c=IN IP6 2001:db8::2
a=rtpmap:101 telephone-event/8000
a=inactive
a=ptime:30
""")
    hold = SDP_OFFER.replace("c=IN IP4 198.51.100.5", "c=IN IP4 0.0.0.0").replace("a=sendrecv", "a=recvonly")
    answer = crlf("""
v=0
o=carrier 99 2 IN IP4 198.51.100.9
s=-
c=IN IP4 198.51.100.9
t=0 0
m=audio 31000 RTP/AVP 9 101
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=rtcp-mux
""")
    savp_answer = srtp.replace("m=audio 30000 RTP/SAVP 0 8 9 101", "m=audio 30000 RTP/SAVP 0 101")
    for name, sel, text in [("plain-offer", 0x18, SDP_OFFER), ("srtp-offer-allow", 0x19, srtp),
                            ("srtp-offer-require", 0x1a, srtp), ("opus-sendonly", 0x3c, opus),
                            ("ipv6-multi", 0x58, ipv6), ("hold", 0x98, hold),
                            ("answer-g722", 0x18, answer), ("srtp-answer", 0x1d, savp_answer)]:
        write("sdp", name, bytes([sel]) + text.encode())


def rtp(pt, seq, ts, ssrc, payload, marker=False, csrcs=(), ext=None, pad=0):
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    for c in csrcs:
        out += struct.pack("!I", c)
    if ext is not None:
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if pad:
        out += b"\0" * (pad - 1) + bytes([pad])
    return out


def rtcp_sr(ssrc, blocks=(), our=0x12345678):
    body = struct.pack("!IQIII", ssrc, 0xE1234567_89ABCDEF, 1000, 10, 1600)
    for _ in blocks:
        body += struct.pack("!IIIIII", our, (5 << 24) | 3, 0x10010, 40, 0x4567_89AB, 65536)
    return struct.pack("!BBH", 0x80 | len(blocks), 200, (len(body) + 4) // 4 - 1) + body


def rtcp_rr(ssrc, our=0x12345678):
    body = struct.pack("!I", ssrc) + struct.pack("!IIIIII", our, 1, 2, 3, 4, 5)
    return struct.pack("!BBH", 0x81, 201, (len(body) + 4) // 4 - 1) + body


def rtcp_sdes(ssrc):
    item = b"\x01\x04abcd\x00\x00"
    body = struct.pack("!I", ssrc) + item
    while len(body) % 4:
        body += b"\0"
    return struct.pack("!BBH", 0x81, 202, (len(body) + 4) // 4 - 1) + body


def rtcp_bye(ssrc):
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def media_seeds():
    pcmu = rtp(0, 1000, 160000, 0xCAFEBABE, b"\xff" * 160, marker=True)
    pcma = rtp(8, 1, 160, 0xCAFEBABE, b"\xd5" * 160)
    g722 = rtp(9, 7, 320, 0xCAFEBABE, bytes(range(160)))
    opus = rtp(111, 9, 960, 0xCAFEBABE, b"\x78\x07" + b"\x00" * 40)
    event = rtp(101, 2, 8000, 0xCAFEBABE, bytes([5, 0x0A, 0x01, 0x40]), marker=True)
    event_end = rtp(101, 3, 8000, 0xCAFEBABE, bytes([5, 0x8A, 0x03, 0x20]))
    ext = rtp(0, 5, 800, 0xCAFEBABE, b"\x7f" * 160, csrcs=(1, 2), ext=b"\x10\xaa\x00\x00", pad=4)
    sr = rtcp_sr(0xCAFEBABE, blocks=[1]) + rtcp_sdes(0xCAFEBABE)
    rr = rtcp_rr(0xCAFEBABE) + rtcp_sdes(0xCAFEBABE) + rtcp_bye(0xCAFEBABE)

    for i, (name, pkt) in enumerate([("pcmu", pcmu), ("pcma", pcma), ("g722", g722), ("opus", opus),
                                     ("dtmf-event", event), ("ext-csrc-pad", ext), ("rtcp-sr", sr),
                                     ("rtcp-rr-bye", rr)]):
        write("rtp_srtp", name, bytes([i]) + pkt)

    def record(flags, dgram):
        return bytes([flags]) + struct.pack("!H", len(dgram)) + dgram

    def stream(codec_pt, codec_payload, ts_step, n):
        return [rtp(codec_pt, 100 + k, 1000 + k * ts_step, 0xCAFEBABE, codec_payload) for k in range(n)]

    pcmu_stream = stream(0, b"\xff" * 160, 160, 5)
    for name, sel, recs in [
        ("pcmu-plain", 0x08, [record(0, p) for p in pcmu_stream] + [record(0, event), record(0, event_end)]),
        ("pcmu-srtp", 0x0c, [record(4, p) for p in pcmu_stream] + [record(4, sr), record(4, rr)]),
        ("pcma-rtcp-port", 0x01, [record(0, p) for p in stream(8, b"\xd5" * 160, 160, 3)]
         + [record(1, sr), record(3, rr)]),
        ("g722-latch", 0x1a, [record(2, p) for p in stream(9, bytes(range(160)), 160, 4)]),
        ("opus-gcm-srtp", 0x2f, [record(4, p) for p in stream(111, b"\x78\x07" + b"\x00" * 40, 960, 4)]
         + [record(4, event), record(8, pcmu_stream[0])]),
        ("timeout-resume", 0x08, [record(0, pcmu_stream[0]), record(8, pcmu_stream[1]), record(8, pcmu_stream[2])]),
    ]:
        write("media_session", name, bytes([sel]) + b"".join(recs))

    # dtmf: 8-byte records [ts][payload], and digit strings.
    def ev(ts, code, end, dur, vol=10):
        return struct.pack("!IBBH", ts, code, (0x80 if end else 0) | vol, dur)

    write("dtmf", "one-digit", ev(8000, 1, False, 160) + ev(8000, 1, False, 320) + ev(8000, 1, True, 480) * 3)
    write("dtmf", "two-digits", ev(8000, 5, True, 800) + ev(16000, 11, False, 160) + ev(16000, 11, True, 800))
    write("dtmf", "long-event", ev(100, 9, False, 0xFF00) + ev(0xFF64, 9, False, 160) + ev(0xFF64, 9, True, 400))
    write("dtmf", "reordered", ev(24000, 3, False, 160) + ev(16000, 2, False, 160) + ev(0xFFFFFF00, 16, False, 1))
    write("dtmf", "digits-text", "123*#ABCDw0")
    write("dtmf", "digits-pause", "1 w 2W9")


def digest_seeds():
    creds = ('Digest username="alice", realm="sip.example.com", nonce="NONCE", '
             'uri="sip:+15550100@sip.example.com", response="6629fae49393a05397450978507c4ef1", '
             'algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b", opaque="x"')
    creds_sha = creds.replace("algorithm=MD5", "algorithm=SHA-256").replace("6629fae49393a05397450978507c4ef1", "ab" * 32)
    creds_2069 = ('Digest username="alice",realm="sip.example.com",nonce="NONCE",'
                  'uri="sip:+15550100@sip.example.com",response="00112233445566778899aabbccddeeff"')
    chal = ('Digest realm="carrier.example.net", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
            'qop="auth,auth-int", algorithm=SHA-256, opaque="5ccc069c", stale=TRUE')
    chal_quoted = 'Digest realm="a \\"quoted\\" realm", nonce="n", algorithm=MD5-sess, qop="auth"'
    for name, mode, text in [("creds-md5", 1, creds), ("creds-sha256", 1, creds_sha),
                             ("creds-2069", 5, creds_2069), ("creds-no-nonce", 0, creds),
                             ("challenge", 0, chal), ("challenge-escapes", 0, chal_quoted),
                             ("client-server", 2, "alice\nsecret"),
                             ("client-server-quotes", 3, 'bob "the" \\user\npa;ss,word'),
                             ("userhash", 1, creds + ", userhash=true"),
                             ("auth-int", 1, creds.replace("qop=auth", "qop=auth-int"))]:
        write("digest", name, bytes([mode]) + text.encode())


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def api_seeds():
    inbound_json = ('{"trunk": {"name": "carrier", "numbers": ["+15550100", "+15550101"], '
                    '"allowed_addresses": ["198.51.100.0/24"], "auth_username": "u", "auth_password": "p", '
                    '"headers": {"X-A": "b"}, "headers_to_attributes": {"X-Call": "call.x"}, '
                    '"ringing_timeout": "30s", "max_call_duration": "3600s", "krisp_enabled": true, '
                    '"media_encryption": "SIP_MEDIA_ENCRYPT_ALLOW"}}')
    outbound_json = ('{"trunk": {"name": "out", "address": "sip.carrier.example.com:5061", '
                     '"transport": "SIP_TRANSPORT_TLS", "numbers": ["+15550100"], '
                     '"destination_country": "US", "authUsername": "u"}}')
    rule_json = ('{"dispatch_rule": {"rule": {"dispatchRuleIndividual": {"roomPrefix": "call-", "pin": "1234"}}, '
                 '"trunk_ids": ["ST_abc"], "name": "r", "attributes": {"k": "v"}, '
                 '"room_config": {"agents": [{"agent_name": "a"}]}}}')
    rule_legacy = '{"rule": {"dispatch_rule_direct": {"room_name": "lobby"}}, "hide_phone_number": true}'
    update_in = '{"sip_trunk_id": "ST_stored", "update": {"numbers": {"add": ["+15550199"], "remove": ["+15550100"]}, "name": "n"}}'
    replace_out = '{"sip_trunk_id": "ST_out", "replace": {"address": "example.com", "numbers": ["+1"]}}'
    update_rule = '{"sip_dispatch_rule_id": "SDR_stored", "update": {"trunk_ids": {"set": ["ST_a"]}, "rule": {"dispatch_rule_callee": {"room_prefix": "x", "randomize": true}}}}'
    participant = ('{"sip_trunk_id": "ST_out", "sip_call_to": "+15550200", "sip_number": "+15550100", '
                   '"room_name": "room", "participant_identity": "caller", "dtmf": "1w2#", '
                   '"play_dialtone": true, "ringing_timeout": "20s", "headers": {"X-Tag": "1"}, '
                   '"wait_until_answered": true, "display_name": "Caller"}')
    transfer = '{"participant_identity": "caller", "room_name": "room", "transfer_to": "tel:+15550300", "play_dialtone": false}'
    create_room = '{"name": "room", "empty_timeout": 300, "max_participants": 10, "metadata": "m"}'
    update_participant = '{"room": "room", "identity": "x", "metadata": "m", "attributes": {"a": "b"}, "name": "n"}'
    send_data = '{"room": "room", "data": "aGVsbG8=", "kind": "RELIABLE", "destination_identities": ["x"], "topic": "t"}'
    list_in = '{"trunk_ids": ["ST_1"], "numbers": ["+1"], "page": {"limit": 10}}'
    info = '{"sip_trunk_id": "", "numbers": ["1", "2"], "created_at": "2024-01-01T00:00:00Z", "ringingTimeout": "1.5s"}'
    for name, sel, body in [("inbound", 0, inbound_json), ("outbound", 1, outbound_json),
                            ("rule", 2, rule_json), ("rule-legacy", 2, rule_legacy),
                            ("update-inbound", 3, update_in), ("replace-outbound", 4, replace_out),
                            ("update-rule", 5, update_rule), ("participant", 6, participant),
                            ("transfer", 7, transfer), ("list-inbound", 8, list_in),
                            ("create-room", 9, create_room), ("update-participant", 10, update_participant),
                            ("send-data", 11, send_data), ("trunk-info", 12, info)]:
        write("api_wire", "json-" + name, bytes([sel]) + body.encode())

    # Protobuf bodies written by field number (livekit_sip.proto).
    trunk = field(2, 2, b"carrier") + field(4, 2, b"+15550100") + field(5, 2, b"198.51.100.0/24")
    write("api_wire", "pb-inbound", bytes([0x80]) + field(1, 2, trunk))
    write("api_wire", "pb-transfer", bytes([0x87]) + field(1, 2, b"caller") + field(2, 2, b"room")
          + field(3, 2, b"sip:x@example.com"))
    write("api_wire", "pb-participant", bytes([0x86]) + field(1, 2, b"ST_out") + field(2, 2, b"+15550200")
          + field(15, 2, b"+15550100") + field(3, 2, b"room") + field(4, 2, b"id"))

    # WebSocket text messages (selector 15).
    ws = "\n".join([
        '{"type": "dtmf", "digits": "123#", "destinations": ["other"]}',
        '{"type": "set_attributes", "attributes": {"lang": "en", "": "x"}}',
        '{"type": "set_metadata", "metadata": "hello"}',
        '{"type": "dtmf", "digits": "9x"}',
        '{"type": "leave"}',
    ])
    write("api_wire", "ws-messages", bytes([0x0f]) + ws.encode())


def main():
    rfc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "corpus", "rfc4475")
    if not os.path.isdir(rfc):
        rfc = "/work/shared/corpus/rfc4475"
    if not os.path.isdir(rfc):
        rfc = None
    sip_seeds(rfc)
    sdp_seeds()
    media_seeds()
    digest_seeds()
    api_seeds()
    total = 0
    for root, _, files in os.walk(CORPUS):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"corpus: {total} bytes")


if __name__ == "__main__":
    main()
