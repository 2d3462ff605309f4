#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

The seeds are real encodings: the envelopes, receipt and invite of
docs/test-vectors/v1.json, the worked examples of docs/protocol.md and
docs/ble-link.md, event lines wpa_supplicant printed in the Wi-Fi lab, and
DHCP packets as phones send them. Each target's header comment says what
its first input byte selects. Run it again after a format changes; the
output is deterministic.
"""
import base64
import hashlib
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
V = json.load(open(os.path.join(ROOT, "docs", "test-vectors", "v1.json")))
OUT = os.path.join(HERE, "corpus")

seeds = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, []).append((name, bytes(data)))


h = bytes.fromhex
u16 = lambda v: struct.pack(">H", v)
u32 = lambda v: struct.pack(">I", v)
u64 = lambda v: struct.pack(">Q", v)

# --- envelope: 0x00 ‖ envelope, or 0x01 ‖ ts ‖ nonce ‖ split ‖ unsigned ‖ tail
env = h(V["envelope"]["bytes"])
rcpt = h(V["receipt"]["bytes"])
seed("envelope", "text-vector", b"\x00" + env)
seed("envelope", "receipt-vector", b"\x00" + rcpt)
author = h(V["author"]["public_key"])


def unsigned(name, kind, body):
    return author + bytes([len(name)]) + name + bytes([kind]) + u32(len(body)) + body


def plaintext_seed(ts, nonce, unsigned_part):
    pad = -(len(unsigned_part) + 64) % 256
    return b"\x01" + u64(ts) + nonce + u16(len(unsigned_part)) + unsigned_part + bytes(pad)


e = V["envelope"]
seed("envelope", "plaintext-text", plaintext_seed(e["timestamp_ms"], h(e["nonce"]),
     unsigned(e["display_name"].encode(), 1, e["text"].encode())))
r = V["receipt"]
seed("envelope", "plaintext-receipt", plaintext_seed(r["timestamp_ms"], h(r["nonce"]),
     unsigned(r["display_name"].encode(), 2, b"".join(h(i) for i in r["message_ids"]))))
seed("envelope", "plaintext-long-name", plaintext_seed(1, bytes(24), unsigned(b"n" * 64, 1, "é".encode() * 100)))

# --- invite: 0x00 ‖ payload without its checksum, or 0x01 ‖ URI text
uri = V["invite"]["uri"]
payload = base64.urlsafe_b64decode(uri.split("/join/")[1] + "==")
seed("invite", "payload-vector", b"\x00" + payload[:-4])
seed("invite", "uri-vector", b"\x01" + uri.encode())
seed("invite", "uri-pasted", b"\x01  PEDDLENET://JOIN/" + uri.split("/join/")[1].encode() + b"\n")
secret = bytes(range(32))
many = b"\x01" + secret + author + bytes([4]) + b"camp" + bytes([4])
for a in [b"/ip4/10.0.0.1/tcp/4717", b"/ip6/::1/udp/4717/quic-v1", b"/dns/x/tcp/1", b"/ip4/192.168.49.1/tcp/4717"]:
    many += bytes([len(a)]) + a
seed("invite", "payload-four-addrs", b"\x00" + many)

# --- sync_wire: reconciliation messages (docs/protocol.md §8.5, §8.7.4, §8.7.5)
fp = h("f3893f5ec429de8cd6e81d93a94f4db3")
seed("sync_wire", "example-8.5", h("01" "81d095ffbc3100" "00" "060120") + b"\x01" + fp + h("0000") + h("0201") + bytes(range(16)))
seed("sync_wire", "fingerprint-all", h("01000001") + fp)
seed("sync_wire", "final-skip", h("01000000"))
seed("sync_wire", "idlisthave", h("0100000302") + bytes(range(16)) + bytes(range(16, 32)))
seed("sync_wire", "ten-byte-varint", h("01" "feffffffffffffffff00" "00" "00" "000000"))
# The exchange of docs/protocol.md §10.8: the marker, a Sketch range (§8.4.1).
S = V["sync"]
seed("sync_wire", "marker-fingerprint", h(S["exchange_a_to_b_1"]))
seed("sync_wire", "split-with-sketch", h(S["exchange_b_to_a_1"]))
seed("sync_wire", "marker-idlisthave", h(S["exchange_a_to_b_2"]))


# --- sync_transport: 0x00/0x01 (request/response) ‖ length (u32) ‖ message
def frame(mode, body):
    return bytes([mode]) + u32(len(body)) + body


room = h(V["kdf"]["room_id"])
seed("sync_transport", "rooms-request", frame(0, b"\x01" + u16(2) + room + bytes(32)))
seed("sync_transport", "reconcile-request", frame(0, b"\x02" + room + h("01000001") + fp))
seed("sync_transport", "fetch-request", frame(0, b"\x03" + room + u16(2) + bytes(range(16)) + bytes(16)))
seed("sync_transport", "rooms-response", frame(1, b"\x81" + u16(1) + room))
seed("sync_transport", "reconcile-none", frame(1, b"\x82\x00"))
seed("sync_transport", "reconcile-some", frame(1, b"\x82\x01" + h("01000000")))
seed("sync_transport", "envelopes", frame(1, b"\x83" + u16(2) + u32(len(env)) + env + u32(len(rcpt)) + rcpt))
seed("sync_transport", "refused-busy", frame(1, b"\xff\x03"))


# --- link_message: the daemon's messages over Bluetooth (§11): a message as is
seed("link_message", "rooms-request", b"\x01" + u32(7) + b"\x01" + u16(1) + room)
seed("link_message", "rooms-response", b"\x02" + u32(7) + b"\x81" + u16(1) + room)
seed("link_message", "reconcile-request", b"\x01" + u32(8) + b"\x02" + room + h("01000001") + fp)
seed("link_message", "envelopes", b"\x02" + u32(9) + b"\x83" + u16(1) + u32(len(env)) + env)
seed("link_message", "envelope", b"\x03" + env)


# --- ipc_frame: a client's byte stream of frames; ipc_json: 0x00 client / 0x01 server
def ipc(j):
    b = j.encode()
    return b"\x01" + u32(len(b)) + b


client = [
    '{"id": 1, "method": "status"}',
    '{"id": 7, "method": "send", "params": {"room": "camp", "text": "hi"}}',
    '{"id": 2, "method": "history", "params": {"room": "camp", "before": null, "limit": 50}}',
    '{"id": 3, "method": "set_settings", "params": {"relay_enabled": false, "relay_budget_mib": 32, "bluetooth_enabled": true}}',
    '{"id": 4, "method": "guest_create", "params": {"room": "camp", "ttl_seconds": 600}}',
    '{"id": 5, "method": "guest_send", "params": {"token": "t", "nickname": "Mo", "text": "hi"}}',
    '{"id": 6, "method": "room_join", "params": {"invite": "%s"}}' % uri,
]
server = [
    '{"reply": {"id": 7, "ok": {"type": "done"}}}',
    '{"reply": {"id": 7, "error": {"code": "unknown_room", "message": "no room"}}}',
    '{"reply": {"id": 1, "ok": {"type": "settings", "relay_enabled": true, "relay_budget_mib": 64, "bluetooth_enabled": true, "wifi_direct_enabled": false, "wifi_host": false}}}',
    '{"reply": {"id": 2, "ok": {"type": "history", "messages": [], "next": null}}}',
    '{"reply": {"id": 3, "ok": {"type": "web_login", "url": "http://127.0.0.1:4718/login#x", "expires_ms": 1767225720000}}}',
]
for i, j in enumerate(client):
    seed("ipc_json", f"client-{i}", b"\x00" + j.encode())
for i, j in enumerate(server):
    seed("ipc_json", f"server-{i}", b"\x01" + j.encode())
seed("ipc_frame", "one-frame", ipc(client[0]))
seed("ipc_frame", "three-frames", ipc(client[1]) + ipc(client[2]) + ipc(client[6]))
seed("ipc_frame", "truncated", ipc(client[3])[:-3])

# --- BLE: frames (docs/ble-link.md), a tagged value, reassembly and link inputs
hello = h("01" "01" "1234" "0010")
credit = h("02" "0008")
ping = h("03" "01020304")
pong = h("04" "01020304")
close = h("05" "01")
data_one = h("13" "00" "000005") + b"hello"
data_first = h("11" "01" "000020") + bytes(range(10))
data_cont = h("10" "01" "0001") + bytes(range(10, 20))
data_last = h("12" "01" "0002") + bytes(range(20, 32))
for n, f in [("hello", hello), ("credit", credit), ("ping", ping), ("pong", pong), ("close", close),
             ("data-one", data_one), ("data-first", data_first), ("data-cont", data_cont), ("data-last", data_last)]:
    seed("ble_frame", n, f)
seed("ble_frame", "tagged-value", h("1234") + b"\x00" + credit)


def lv(items):
    return b"".join(bytes([len(i)]) + i for i in items)


seed("ble_reassembly", "one-message", lv([b"\x00" + data_one]))
seed("ble_reassembly", "three-fragments", lv([b"\x00" + data_first.replace(b"\x11\x01", b"\x11\x00", 1),
                                              b"\x01" + data_cont.replace(b"\x10\x01", b"\x10\x00", 1),
                                              b"\x02" + data_last.replace(b"\x12\x01", b"\x12\x00", 1)]))
seed("ble_reassembly", "out-of-order", lv([b"\x01" + data_one.replace(b"\x13\x00", b"\x13\x01", 1), b"\x00" + data_first]))
seed("ble_link", "hello-then-data", b"\x00" + lv([hello, credit, data_one]))
seed("ble_link", "open-ping-timeouts", b"\x01" + lv([ping, b"", credit, b"", b""]))
seed("ble_link", "open-sending", b"\x03" + lv([credit, data_first, data_cont, data_last, b""]))
seed("ble_link", "open-close", b"\x01" + lv([close]))


# --- dhcp: 0x00 ‖ request from a phone, or 0x01 ‖ reply as the client reads it
def dhcp(op, mtype, opts=b"", ciaddr=0, yiaddr=0, siaddr=0):
    head = bytes([op, 1, 6, 0]) + u32(0x3903F326) + u16(0) + u16(0x8000)
    head += u32(ciaddr) + u32(yiaddr) + u32(siaddr) + u32(0)
    head += h("4200000001000000") + bytes(8) + bytes(64 + 128) + h("63825363")
    return head + bytes([53, 1, mtype]) + opts + b"\xff"


srv = 0xC0A83101  # 192.168.49.1
seed("dhcp", "discover", b"\x00" + dhcp(1, 1, bytes([55, 3, 1, 3, 6]) + bytes([61, 7, 1]) + h("420000000100")))
seed("dhcp", "request", b"\x00" + dhcp(1, 3, bytes([50, 4]) + u32(srv + 1) + bytes([54, 4]) + u32(srv)))
seed("dhcp", "renew", b"\x00" + dhcp(1, 3, b"", ciaddr=srv + 1))
seed("dhcp", "release", b"\x00" + dhcp(1, 7, bytes([54, 4]) + u32(srv), ciaddr=srv + 1))
seed("dhcp", "inform", b"\x00" + dhcp(1, 8, b"", ciaddr=srv + 9))
seed("dhcp", "offer", b"\x01" + dhcp(2, 2, bytes([54, 4]) + u32(srv) + bytes([51, 4]) + u32(3600) + bytes([1, 4]) + u32(0xFFFFFF00), yiaddr=srv + 1))
seed("dhcp", "ack", b"\x01" + dhcp(2, 5, bytes([54, 4]) + u32(srv) + bytes([51, 4]) + u32(0xFFFFFFFF), yiaddr=srv + 1))
seed("dhcp", "nak", b"\x01" + dhcp(2, 6, bytes([54, 4]) + u32(srv)))

# --- wpa_event: lines and replies seen in the Wi-Fi lab
for i, line in enumerate([
    "<3>P2P-DEVICE-FOUND 42:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 pri_dev_type=1-0050F204-1 name='' config_methods=0x1108 dev_capab=0x25 group_capab=0x0 vendor_elems=1 new=1",
    "<3>P2P-GROUP-STARTED p2p-wlan0-0 GO ssid=\"DIRECT-gH\" freq=2412 go_dev_addr=42:00:00:00:00:00",
    "<3>P2P-GROUP-STARTED p2p-wlan1-0 client ssid=\"DIRECT-g H\" freq=2412 go_dev_addr=42:00:00:00:00:00",
    "<3>P2P-GROUP-REMOVED p2p-wlan0-0 GO reason=REQUESTED",
    "<3>p2p-wlan0-0: AP-STA-CONNECTED 46:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00",
    "<3>p2p-wlan0-0: AP-STA-DISCONNECTED 46:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00",
    "<3>P2P-PROV-DISC-PBC-REQ 42:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 pri_dev_type=1-0050F204-1",
    "<3>P2P-GO-NEG-REQUEST 42:00:00:00:01:00 dev_passwd_id=4 go_intent=7",
    "<3>P2P-GO-NEG-FAILURE status=1",
    "<3>P2P-DEVICE-LOST p2p_dev_addr=42:00:00:00:01:00",
    "<2>CTRL-EVENT-TERMINATING",
    "42:00:00:00:00:00\npri_dev_type=1-0050F204-1\ndevice_name=\ngroup_capab=0x1b\nflags=[REPORTED]\nvendor_elems=dd0100dd0502504e0101\n",
    "42:00:00:00:01:00",
]):
    seed("wpa_event", f"line-{i}", line)

# --- web_json: bodies, a history query (and a header-like line)
for i, b in enumerate([
    '{"code": "7dQ5abcdefghijklmnopqrstuvwxyz0123456789ABC"}',
    '{"name": "Base camp"}',
    '{"invite": "%s"}' % uri,
    '{"text": "Meet at the north fire at nine."}',
    '{"room": "bac6e49c", "ttl_minutes": 60}',
    '{"nickname": "Mo"}',
    "before=306b0222df994a2156c9c8d9e8a6d3a558b8329594e2083f181bb685fd947c06",
    "theme=dark; pn_session=abc123",
]):
    seed("web_json", f"body-{i}", b)

if os.path.isdir(OUT):
    shutil.rmtree(OUT)
for target, items in sorted(seeds.items()):
    d = os.path.join(OUT, target)
    os.makedirs(d)
    for name, data in items:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
print(f"{sum(len(v) for v in seeds.values())} seeds for {len(seeds)} targets in {OUT}")
