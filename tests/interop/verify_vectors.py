#!/usr/bin/env python3
"""Independent implementation of the PeddleNet v1 wire formats, written from
docs/protocol.md (sections 1, 2, 3, 5 and 8: set reconciliation with
sketches), checked against docs/test-vectors/v1.json.

Needs: pip install cryptography pynacl

Prints one line per check and, last, "N passed, M failed". Exits 1 if any
check failed.
"""

import base64
import hashlib
import hmac
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "test-vectors", "v1.json")


class ProtoError(Exception):
    """A refusal, named as in docs/protocol.md §3.5 / §5.3."""

    def __init__(self, code, detail=""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


# ---------------------------------------------------------------------------
# §1 Ed25519 strict verification

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decode_point(b):
    """Decoding rule of §1 step 2 (y >= p reduced, x = 0 with sign bit accepted)."""
    y = (int.from_bytes(b, "little") & ((1 << 255) - 1)) % P
    sign = b[31] >> 7
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x & 1:
        x = P - x
    if sign:
        x = (P - x) % P
    return (x, y)


def _add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def _small_order(pt):
    q = pt
    for _ in range(3):
        q = _add(q, q)
    return q == (0, 1)


def verify_strict(public_key, message, sig):
    """True iff sig is valid under the strict rule of docs/protocol.md §1.
    Raises ProtoError('PointDecode') if the public key does not decode.

    Steps 1-3 are done here; steps 4-5 (the cofactorless equation with a
    byte comparison of R) are OpenSSL's Ed25519 verification, via
    `cryptography`. (OpenSSL may additionally refuse a non-canonical public
    key encoding that ed25519-dalek accepts; no honest peer produces one.)"""
    if len(public_key) != 32 or len(sig) != 64:
        return False
    a = _decode_point(public_key)
    if a is None:
        raise ProtoError("PointDecode")
    if int.from_bytes(sig[32:], "little") >= L:
        return False
    r = _decode_point(sig[:32])
    if r is None or _small_order(r) or _small_order(a):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
        return True
    except InvalidSignature:
        return False


def ed25519_public(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(seed, message):
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


# ---------------------------------------------------------------------------
# §2 Key derivation

KDF_SALT = b"peddlenet v1"
LABEL_SIGN = b"peddlenet/v1/room-sign"
LABEL_AEAD = b"peddlenet/v1/room-aead"
LABEL_TAG = b"peddlenet/v1/author-tag"
LABEL_TOPIC = b"peddlenet/v1/topic"


def hkdf(secret, label):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, info=label).derive(secret)


class RoomKeys:
    def __init__(self, secret):
        assert len(secret) == 32
        self.secret = secret
        self.sign_seed = hkdf(secret, LABEL_SIGN)
        self.room_id = ed25519_public(self.sign_seed)
        self.aead_key = hkdf(secret, LABEL_AEAD)
        self.tag_key = hkdf(secret, LABEL_TAG)

    def author_tag(self, author_key):
        return hmac.new(self.tag_key, author_key, hashlib.sha256).digest()[:16]

    def topic(self):
        return topic_for(self.room_id)


def topic_for(room_id):
    return "peddlenet/1/" + hashlib.sha256(LABEL_TOPIC + room_id).digest()[:16].hex()


# ---------------------------------------------------------------------------
# §3 Envelope

VERSION = 1
KIND_ROOM_MESSAGE = 1
BODY_TEXT = 1
BODY_RECEIPT = 2
MAX_RECEIPT_IDS = 256
HEADER_LEN = 86
TAG_LEN = 16
SIG_LEN = 64
MAX_ENVELOPE_LEN = 64 * 1024
MAX_TEXT_LEN = 32 * 1024
MAX_NAME_LEN = 64
PAD_BLOCK = 256
MAX_FUTURE_SKEW_MS = 10 * 60 * 1000
DOMAIN_ENVELOPE = b"peddlenet/v1/envelope"
DOMAIN_MESSAGE = b"peddlenet/v1/message"


def author_signed_message(room_id, tag, ts, nonce, p0):
    return DOMAIN_MESSAGE + room_id + tag + ts.to_bytes(8, "big") + nonce + p0


def seal(keys, author_seed, name, text, ts, nonce, receipt=None):
    """A text envelope; with `receipt` (a list of 32-byte message ids), a receipt."""
    name_b = name.encode("utf-8")
    if len(name_b) > MAX_NAME_LEN:
        raise ProtoError("FieldLength", "display name")
    if receipt is None:
        kind, body = BODY_TEXT, text.encode("utf-8")
        if len(body) > MAX_TEXT_LEN:
            raise ProtoError("FieldLength", "text")
    else:
        if not 1 <= len(receipt) <= MAX_RECEIPT_IDS:
            raise ProtoError("FieldLength", "receipt ids")
        kind, body = BODY_RECEIPT, b"".join(receipt)
    assert len(nonce) == 24
    author_key = ed25519_public(author_seed)
    tag = keys.author_tag(author_key)
    p0 = author_key + bytes([len(name_b)]) + name_b + bytes([kind]) + len(body).to_bytes(4, "big") + body
    plain = p0 + ed25519_sign(author_seed, author_signed_message(keys.room_id, tag, ts, nonce, p0))
    plain += b"\x00" * (-len(plain) % PAD_BLOCK)
    n = len(plain) + TAG_LEN
    header = bytes([VERSION, KIND_ROOM_MESSAGE]) + keys.room_id + tag + ts.to_bytes(8, "big") + nonce + n.to_bytes(4, "big")
    assert len(header) == HEADER_LEN
    ct = crypto_aead_xchacha20poly1305_ietf_encrypt(plain, header, nonce, keys.aead_key)
    assert len(ct) == n
    body = header + ct
    return body + ed25519_sign(keys.sign_seed, DOMAIN_ENVELOPE + body)


class Reader:
    """Takes fields left to right; running past the end is `Truncated`."""

    def __init__(self, b, pos=0):
        self.b, self.pos = b, pos

    def take(self, k):
        if self.pos + k > len(self.b):
            raise ProtoError("Truncated")
        s = self.b[self.pos:self.pos + k]
        self.pos += k
        return s


def utf8(b, what):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError("Utf8", what) from None


class View:
    """Checks 1-6 of §3.5."""

    def __init__(self, raw):
        if len(raw) > MAX_ENVELOPE_LEN:
            raise ProtoError("TooLarge")
        if len(raw) < HEADER_LEN:
            raise ProtoError("Truncated")
        if raw[0] != VERSION:
            raise ProtoError("Version", str(raw[0]))
        if raw[1] != KIND_ROOM_MESSAGE:
            raise ProtoError("Kind", str(raw[1]))
        n = int.from_bytes(raw[82:86], "big")
        if n < TAG_LEN or n > MAX_ENVELOPE_LEN:
            raise ProtoError("FieldLength", "ciphertext")
        total = HEADER_LEN + n + SIG_LEN
        if len(raw) < total:
            raise ProtoError("Truncated")
        if len(raw) > total:
            raise ProtoError("TrailingBytes")
        self.raw = raw
        self.n = n
        self.room_id = raw[2:34]
        self.author_tag = raw[34:50]
        self.timestamp_ms = int.from_bytes(raw[50:58], "big")
        self.nonce = raw[58:82]

    def verify_room_signature(self):
        """Check 8 of §3.5."""
        try:
            ok = verify_strict(self.room_id, DOMAIN_ENVELOPE + self.raw[:-SIG_LEN], self.raw[-SIG_LEN:])
        except ProtoError:
            ok = False
        if not ok:
            raise ProtoError("RoomSignature")

    def open(self, keys):
        """Checks 7-13 of §3.5."""
        if self.room_id != keys.room_id:
            raise ProtoError("WrongRoom")
        self.verify_room_signature()
        try:
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                self.raw[HEADER_LEN:HEADER_LEN + self.n], self.raw[:HEADER_LEN], self.nonce, keys.aead_key)
        except CryptoError:
            raise ProtoError("Decrypt") from None
        if len(plain) % PAD_BLOCK != 0:
            raise ProtoError("Padding")
        r = Reader(plain)
        take = r.take

        author_key = take(32)
        name_len = take(1)[0]
        if name_len > MAX_NAME_LEN:
            raise ProtoError("FieldLength", "display name")
        name = utf8(take(name_len), "display name")
        kind = take(1)[0]
        body_len = int.from_bytes(take(4), "big")
        text, receipt = None, None
        if kind == BODY_TEXT:
            if body_len > MAX_TEXT_LEN:
                raise ProtoError("FieldLength", "text")
            text = utf8(take(body_len), "text")
        elif kind == BODY_RECEIPT:
            if body_len % 32 != 0 or not 1 <= body_len // 32 <= MAX_RECEIPT_IDS:
                raise ProtoError("FieldLength", "receipt ids")
            ids = take(body_len)
            receipt = [ids[i:i + 32] for i in range(0, body_len, 32)]
        else:
            raise ProtoError("Kind", str(kind))
        sig_offset = r.pos
        author_sig = take(64)
        if any(plain[r.pos:]) or len(plain) - r.pos >= PAD_BLOCK:
            raise ProtoError("Padding")
        if keys.author_tag(author_key) != self.author_tag:
            raise ProtoError("AuthorTag")
        msg = author_signed_message(self.room_id, self.author_tag, self.timestamp_ms, self.nonce, plain[:sig_offset])
        try:
            ok = verify_strict(author_key, msg, author_sig)
        except ProtoError:
            raise ProtoError("AuthorKey") from None
        if not ok:
            raise ProtoError("AuthorSignature")
        return {
            "id": message_id(self.raw),
            "room_id": self.room_id,
            "author": author_key,
            "author_name": name,
            "timestamp_ms": self.timestamp_ms,
            "text": text,
            "receipt": receipt,
            "plaintext_len": len(plain),
        }


def check_timestamp(ts, now_ms):
    """Check 14 of §3.5."""
    if ts > min(now_ms + MAX_FUTURE_SKEW_MS, 2**64 - 1):
        raise ProtoError("FromTheFuture")


def message_id(envelope):
    return hashlib.sha256(envelope).digest()


# ---------------------------------------------------------------------------
# §5 Invite

INVITE_PREFIX = "peddlenet://join/"
INVITE_VERSION = 1
MAX_ROOM_NAME_LEN = 64
MAX_INVITE_ADDRS = 4
MAX_INVITE_ADDR_LEN = 128
MAX_PAYLOAD = 1 + 32 + 32 + 1 + MAX_ROOM_NAME_LEN + 1 + MAX_INVITE_ADDRS * (1 + MAX_INVITE_ADDR_LEN) + 4
MAX_URI_LEN = len(INVITE_PREFIX) + -(-MAX_PAYLOAD // 3) * 4
B64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# Characters with the Unicode White_Space property (what Rust's str::trim removes).
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"


def check_room_name(name):
    if not name.strip(WHITE_SPACE):
        raise ProtoError("Empty", "room name")
    if len(name.encode("utf-8")) > MAX_ROOM_NAME_LEN:
        raise ProtoError("FieldLength", "room name")


def b64url_decode_strict(s):
    if any(c not in B64URL for c in s) or len(s) % 4 == 1:
        raise ProtoError("InviteEncoding")
    out = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if base64.urlsafe_b64encode(out).decode().rstrip("=") != s:  # non-zero unused bits
        raise ProtoError("InviteEncoding")
    return out


def invite_to_bytes(secret, inviter, room_name, addrs):
    name_b = room_name.encode("utf-8")
    b = bytes([INVITE_VERSION]) + secret + inviter + bytes([len(name_b)]) + name_b + bytes([len(addrs)])
    for a in addrs:
        ab = a.encode("utf-8")
        b += bytes([len(ab)]) + ab
    return b + hashlib.sha256(b).digest()[:4]


def invite_to_uri(secret, inviter, room_name, addrs):
    check_room_name(room_name)
    addrs = [a for a in addrs if a and len(a.encode("utf-8")) <= MAX_INVITE_ADDR_LEN][:MAX_INVITE_ADDRS]
    payload = invite_to_bytes(secret, inviter, room_name, addrs)
    return INVITE_PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def invite_from_bytes(b):
    if len(b) > MAX_PAYLOAD:
        raise ProtoError("TooLarge")
    if len(b) < 72:
        raise ProtoError("Truncated")
    body, checksum = b[:-4], b[-4:]
    if hashlib.sha256(body).digest()[:4] != checksum:
        raise ProtoError("InviteChecksum")
    if body[0] != INVITE_VERSION:
        raise ProtoError("Version", str(body[0]))
    r = Reader(body, 1)
    take = r.take
    secret = take(32)
    inviter = take(32)
    name = utf8(take(take(1)[0]), "room name")
    check_room_name(name)
    count = take(1)[0]
    if count > MAX_INVITE_ADDRS:
        raise ProtoError("FieldLength", "address list")
    addrs = []
    for _ in range(count):
        n = take(1)[0]
        if n == 0 or n > MAX_INVITE_ADDR_LEN:
            raise ProtoError("FieldLength", "address")
        addrs.append(utf8(take(n), "address"))
    if r.pos != len(body):
        raise ProtoError("TrailingBytes")
    return {"secret": secret, "inviter": inviter, "room_name": name, "addrs": addrs}


def invite_parse(uri):
    uri = uri.strip(WHITE_SPACE)
    if len(uri.encode("utf-8")) > MAX_URI_LEN:
        raise ProtoError("TooLarge")
    if uri[:len(INVITE_PREFIX)].lower() != INVITE_PREFIX or not uri[:len(INVITE_PREFIX)].isascii():
        raise ProtoError("InviteScheme")
    return invite_from_bytes(b64url_decode_strict(uri[len(INVITE_PREFIX):]))


# ---------------------------------------------------------------------------
# Checks

results = []


# ---------------------------------------------------------------------------
# §8 Set reconciliation: fingerprints, sketches, messages, the algorithm

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SYNC_VERSION = 1
MAX_MESSAGE_LEN = 262144
MAX_RANGES = 8192
BUCKETS = 16
ID_LIST_THRESHOLD = 32
SKETCH_M = 10
SKETCH_MAX_SPLITS = 16
OUTPUT_BUDGET = MAX_MESSAGE_LEN - 4096
CELL_LEN = 24
INF = None  # the Infinity bound; a finite bound is (ts, prefix)


def fingerprint(items):
    s = sum(int.from_bytes(i[1], "little") for i in items) % (1 << 256)
    return hashlib.sha256(s.to_bytes(32, "little") + len(items).to_bytes(8, "little")).digest()[:16]


def mix(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def sk_hash(p, j):
    a, b = int.from_bytes(p[:8], "little"), int.from_bytes(p[8:16], "little")
    return mix(a ^ mix(b ^ ((GOLDEN * (j + 1)) & M64)))


def sk_check(p):
    return sk_hash(p, 0).to_bytes(8, "little")


def sk_cells_of(p, m):
    return [j * m + ((sk_hash(p, j + 1) * m) >> 64) for j in range(3)]


def sk_build(prefixes, m):
    cells = [[bytes(16), bytes(8)] for _ in range(3 * m)]
    for p in prefixes:
        for i in sk_cells_of(p, m):
            cells[i] = [_xor(cells[i][0], p), _xor(cells[i][1], sk_check(p))]
    return [(k, c) for k, c in cells]


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def sk_difference(peer, mine):
    """Peels peer's sketch against our prefixes `mine` (in item order):
    (ours only, in item order; theirs only, ascending) or None."""
    m = len(peer) // 3
    if m == 0 or len(peer) != 3 * m:
        return None
    table = [[_xor(k, k2), _xor(c, c2)] for (k, c), (k2, c2) in zip(sk_build(mine, m), peer)]
    pure = lambda cell: cell[1] == sk_check(cell[0])  # noqa: E731
    peeled = set()
    stack = [i for i in range(len(table)) if pure(table[i])]
    while stack:
        i = stack.pop()
        if not pure(table[i]):
            continue
        p = table[i][0]
        if len(peeled) == len(table) or p in peeled:
            return None
        peeled.add(p)
        at = sk_cells_of(p, m)
        if i not in at:
            return None
        for j in at:
            table[j] = [_xor(table[j][0], p), _xor(table[j][1], sk_check(p))]
            if pure(table[j]):
                stack.append(j)
    if any(k != bytes(16) or c != bytes(8) for k, c in table):
        return None
    ours = [p for p in mine if p in peeled]
    return ours, sorted(peeled - set(ours))


class SyncError(Exception):
    def __init__(self, code, detail=""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def _varint(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        if v == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def sync_encode(ranges):
    out, prev = bytearray([SYNC_VERSION]), 0
    for bound, mode in ranges:
        if bound is INF:
            out += b"\x00\x00"
        else:
            ts, prefix = bound
            out += _varint(ts - prev + 1) + bytes([len(prefix)]) + prefix
            prev = ts
        kind = mode[0]
        if kind == "skip":
            out += _varint(0)
        elif kind == "fp":
            out += _varint(1) + mode[1]
        elif kind in ("idlist", "have"):
            out += _varint(2 if kind == "idlist" else 3) + _varint(len(mode[1])) + b"".join(mode[1])
        else:  # sketch: fingerprint, span, cells
            _, fp, span, cells = mode
            out += _varint(4) + fp + _varint(span) + _varint(len(cells) // 3)
            out += b"".join(k + c for k, c in cells)
    return bytes(out)


def sync_decode(b, max_mode=4):
    """§8.6, rule by rule, in order. `max_mode=3`: a decoder that predates sketches."""
    if len(b) > MAX_MESSAGE_LEN:
        raise SyncError("TooLarge")
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(b):
            raise SyncError("Truncated")
        pos += n
        return b[pos - n:pos]

    def varint():
        v = 0
        for i in range(10):
            x = take(1)[0]
            if i == 9 and x > 1:
                raise SyncError("Malformed", "varint overflows 64 bits")
            v |= (x & 0x7F) << (7 * i)
            if not x & 0x80:
                return v
        raise SyncError("Malformed", "varint longer than 10 bytes")

    if take(1)[0] != SYNC_VERSION:
        raise SyncError("Version")
    ranges, prev = [], 0
    while pos < len(b):
        if len(ranges) == MAX_RANGES:
            raise SyncError("TooManyRanges")
        if ranges and ranges[-1][0] is INF:
            raise SyncError("Malformed", "range after the infinite bound")
        enc, plen = varint(), take(1)[0]
        if plen > 32:
            raise SyncError("Malformed", "prefix longer than 32 bytes")
        prefix = take(plen)
        if enc == 0:
            if plen:
                raise SyncError("Malformed", "infinite bound with a prefix")
            bound = INF
        else:
            ts = prev + enc - 1
            if ts >= M64:
                raise SyncError("Malformed", "bound at or past 2^64-1")
            prev, bound = ts, (ts, prefix)
        if bound is not INF and ranges and ranges[-1][0] >= bound:
            raise SyncError("Malformed", "bounds must increase")
        kind = varint()
        if kind == 0:
            mode = ("skip",)
        elif kind == 1:
            mode = ("fp", take(16))
        elif kind in (2, 3):
            n = varint()
            if n * 16 > len(b) - pos:
                raise SyncError("Truncated")
            mode = ("idlist" if kind == 2 else "have", [take(16) for _ in range(n)])
        elif kind == 4 and max_mode >= 4:
            fp, span = take(16), varint()
            if span > len(ranges):
                raise SyncError("Malformed", "sketch span past the first range")
            if any(r[1][0] != "fp" for r in ranges[len(ranges) - span:]):
                raise SyncError("Malformed", "sketch span over a non-Fingerprint range")
            m = varint()
            if m == 0:
                raise SyncError("Malformed", "sketch without cells")
            if m * 3 * CELL_LEN > len(b) - pos:
                raise SyncError("Truncated")
            cells = []
            for _ in range(3 * m):
                c = take(CELL_LEN)
                cells.append((c[:16], c[16:]))
            mode = ("sketch", fp, span, cells)
        else:
            raise SyncError("Mode")
        ranges.append((bound, mode))
    if not ranges or ranges[-1][0] is not INF:
        raise SyncError("Malformed", "the last bound must be infinite")
    return ranges


MARKER = ((0, b""), ("skip",))


def below(item, bound):
    return bound is INF or (item[0], item[1][: len(bound[1])]) < bound


def lower_index(items, bound):
    return next((i for i, it in enumerate(items) if not below(it, bound)), len(items))


def bound_between(a, b):
    if a[0] != b[0]:
        return (b[0], b"")
    c = next(i for i in range(32) if a[1][i] != b[1][i])
    return (b[0], b[1][: c + 1])


def range_len(r):
    """The output estimate of §8.7.3."""
    bound, mode = r
    n = 2 if bound is INF else 11 + len(bound[1])
    kind = mode[0]
    if kind == "skip":
        return n + 1
    if kind == "fp":
        return n + 17
    if kind in ("idlist", "have"):
        return n + 11 + 16 * len(mode[1])
    return n + 37 + CELL_LEN * len(mode[3])


class Out:
    def __init__(self, start):
        self.ranges, self.bytes = [], start

    def push(self, r):
        if r[1][0] == "skip" and self.ranges and self.ranges[-1][1][0] == "skip":
            self.ranges[-1] = (r[0], r[1])
            return
        self.bytes += range_len(r)
        self.ranges.append(r)

    def full(self):
        return self.bytes >= OUTPUT_BUDGET or len(self.ranges) + BUCKETS + 2 >= MAX_RANGES


def prefix(item):
    return item[1][:16]


def split(out, items, upper, sketch):
    n = len(items)
    if n < ID_LIST_THRESHOLD:
        out.push((upper, ("idlist", [prefix(i) for i in items])))
        return
    for i in range(BUCKETS):
        a, b = i * n // BUCKETS, (i + 1) * n // BUCKETS
        bound = upper if i + 1 == BUCKETS else bound_between(items[b - 1], items[b])
        fp = fingerprint(items[a:b])
        if sketch and i + 1 == BUCKETS:
            out.push((bound, ("sketch", fp, BUCKETS - 1, sk_build([prefix(x) for x in items], SKETCH_M))))
        else:
            out.push((bound, ("fp", fp)))


def is_final(ranges):
    return all(m[0] in ("skip", "have") for _, m in ranges)


class Reconciler:
    """§8.7, as the reference implementation runs it."""

    def __init__(self):
        self.need, self.initiator, self.peer_reads_sketches = [], False, False

    def note(self, p):
        if p not in self.need:
            self.need.append(p)

    def initiate(self, items):
        self.initiator = True
        mode = ("idlist", [prefix(i) for i in items]) if len(items) < ID_LIST_THRESHOLD else ("fp", fingerprint(items))
        return [MARKER, (INF, mode)]

    def respond(self, items, msg):
        has_sketch = any(m[0] == "sketch" for _, m in msg)
        self.peer_reads_sketches |= self.initiator and has_sketch
        may = self.peer_reads_sketches if self.initiator else (msg[0] == MARKER or has_sketch)
        n, extent, lo = len(msg), [], 0
        for bound, _ in msg:
            hi = max(lo, lower_index(items, bound))
            extent.append((lo, hi))
            lo = hi
        settled, in_group = [None] * n, [False] * n
        for k, (_, mode) in enumerate(msg):
            if mode[0] == "sketch":
                first = k - min(mode[2], k)
                mine = [prefix(i) for i in items[extent[first][0]:extent[k][1]]]
                d = sk_difference(mode[3], mine)
                if d is not None:
                    settled[first] = (k, d)
                    for g in range(first, k + 1):
                        in_group[g] = True
        differs = [m[0] in ("fp", "sketch") and fingerprint(items[lo:hi]) != m[1] for (_, m), (lo, hi) in zip(msg, extent)]
        sketch_splits = may and sum(1 for i in range(n) if differs[i] and not in_group[i]) <= SKETCH_MAX_SPLITS
        out = Out(1 + (4 if self.initiator else 0))
        i = 0
        while i < n:
            bound, mode = msg[i]
            lo, hi = extent[i]
            if out.full():
                out.push((msg[-1][0], ("fp", fingerprint(items[lo:]))))
                break
            if i == 0 and msg[0] == MARKER:
                i += 1
                continue
            if settled[i] is not None and out.bytes + 16 * len(settled[i][1][0]) + 64 <= OUTPUT_BUDGET:
                k, (ours, theirs) = settled[i]
                for p in theirs:
                    self.note(p)
                out.push((msg[k][0], ("have", ours) if ours else ("skip",)))
                i = k + 1
                continue
            mine = [prefix(x) for x in items[lo:hi]]
            if mode[0] == "skip":
                out.push((bound, ("skip",)))
            elif mode[0] in ("fp", "sketch"):
                if differs[i]:
                    split(out, items[lo:hi], bound, sketch_splits)
                else:
                    out.push((bound, ("skip",)))
            elif mode[0] == "idlist":
                for p in mode[1]:
                    if p not in mine:
                        self.note(p)
                have = [p for p in mine if p not in mode[1]]
                if out.bytes + 16 * len(have) + 64 > OUTPUT_BUDGET:
                    split(out, items[lo:hi], bound, sketch_splits)
                else:
                    out.push((bound, ("have", have) if have else ("skip",)))
            else:
                for p in mode[1]:
                    if p not in mine:
                        self.note(p)
                out.push((bound, ("skip",)))
            i += 1
        if is_final(msg):
            return None
        return ([MARKER] if self.initiator else []) + out.ranges


def sync_item(i):
    return (1767225600000 + 1000 * i, hashlib.sha256(b"peddlenet sync vector" + i.to_bytes(4, "big")).digest())


def check(name, fn):
    try:
        r = fn()
        ok, detail = (r, "") if isinstance(r, bool) else r
    except Exception as e:  # noqa: BLE001 - report any failure as a failed check
        ok, detail = False, f"{type(e).__name__}: {e}"
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))


def eq(got, want):
    return (got == want, "" if got == want else f"got {got!r}, want {want!r}")


def refused(code, fn):
    try:
        fn()
    except ProtoError as e:
        return eq(e.code, code)
    return (False, f"accepted, want {code}")


def refused_sync(code, fn):
    try:
        fn()
    except SyncError as e:
        return eq(e.code, code)
    return (False, f"accepted, want {code}")


def main():
    with open(VECTORS, encoding="utf-8") as f:
        v = json.load(f)
    kdf, auth, env, inv, rcpt = v["kdf"], v["author"], v["envelope"], v["invite"], v["receipt"]
    h = bytes.fromhex

    secret = h(kdf["room_secret"])
    check("inputs: room secret is 0x00..0x1f", lambda: eq(secret, bytes(range(0x00, 0x20))))
    check("inputs: author seed is 0x20..0x3f", lambda: eq(h(auth["seed"]), bytes(range(0x20, 0x40))))
    check("inputs: nonce is 0x40..0x57", lambda: eq(h(env["nonce"]), bytes(range(0x40, 0x58))))

    keys = RoomKeys(secret)
    check("kdf: salt", lambda: eq(KDF_SALT, kdf["salt"].encode()))
    check("kdf: room_id", lambda: eq(keys.room_id.hex(), kdf["room_id"]))
    check("kdf: aead_key", lambda: eq(keys.aead_key.hex(), kdf["aead_key"]))
    check("kdf: author_tag_key", lambda: eq(keys.tag_key.hex(), kdf["author_tag_key"]))
    check("kdf: topic", lambda: eq(keys.topic(), kdf["topic"]))

    seed = h(auth["seed"])
    author_key = ed25519_public(seed)
    check("author: public_key", lambda: eq(author_key.hex(), auth["public_key"]))
    check("author: author_tag", lambda: eq(keys.author_tag(author_key).hex(), auth["author_tag"]))

    raw = h(env["bytes"])
    ts, name, text, nonce = env["timestamp_ms"], env["display_name"], env["text"], h(env["nonce"])
    check("envelope: sealing the inputs reproduces the bytes",
          lambda: eq(seal(keys, seed, name, text, ts, nonce).hex(), env["bytes"]))
    check("envelope: message_id = SHA-256(bytes)", lambda: eq(message_id(raw).hex(), env["message_id"]))

    def header():
        view = View(raw)
        got = (raw[0], raw[1], view.room_id.hex(), view.author_tag.hex(), view.timestamp_ms, view.nonce.hex(), view.n, len(raw))
        want = (1, 1, kdf["room_id"], auth["author_tag"], ts, env["nonce"], 272, 422)
        return eq(got, want)

    check("envelope: header fields by offset", header)
    check("envelope: topic of its room id", lambda: eq(topic_for(View(raw).room_id), kdf["topic"]))

    def room_sig():
        View(raw).verify_room_signature()
        return True

    check("envelope: room signature verifies without the secret", room_sig)

    def opens():
        o = View(raw).open(keys)
        got = (o["author"].hex(), o["author_name"], o["text"], o["timestamp_ms"], o["id"].hex(), o["plaintext_len"])
        want = (auth["public_key"], name, text, ts, env["message_id"], 256)
        return eq(got, want)

    check("envelope: opens (room sig, decrypt, padding, author tag, author sig) to text/name/timestamp", opens)
    rraw = h(rcpt["bytes"])
    rids = [h(x) for x in rcpt["message_ids"]]
    check("receipt: it confirms the text envelope", lambda: eq(rcpt["message_ids"], [env["message_id"]]))
    check("receipt: sealing the inputs reproduces the bytes",
          lambda: eq(seal(keys, seed, rcpt["display_name"], None, rcpt["timestamp_ms"], h(rcpt["nonce"]), receipt=rids).hex(),
                     rcpt["bytes"]))

    def receipt_opens():
        o = View(rraw).open(keys)
        return eq((o["receipt"], o["text"], o["author"].hex(), len(rraw)), (rids, None, auth["public_key"], len(raw)))

    check("receipt: opens to its ids; as long as the text envelope, with the same header kind", receipt_opens)
    check("receipt: header byte 1 is kind 1, like a text", lambda: eq(rraw[1], 1))

    check("envelope: timestamp 10 min ahead is accepted", lambda: (check_timestamp(ts, ts - MAX_FUTURE_SKEW_MS) is None))
    check("envelope: timestamp 10 min + 1 ms ahead is refused",
          lambda: refused("FromTheFuture", lambda: check_timestamp(ts, ts - MAX_FUTURE_SKEW_MS - 1)))
    check("envelope: an old timestamp is accepted", lambda: (check_timestamp(ts, ts + 10**12) is None))

    identity = bytes([1]) + bytes(31)  # encoding of the identity point, a small-order "key"
    check("negative: small-order key and R are refused by strict verification",
          lambda: eq(verify_strict(identity, b"any message", identity + bytes(32)), False))
    check("negative: S >= L is refused by strict verification",
          lambda: eq(verify_strict(author_key, b"x", raw[:32] + (L + 1).to_bytes(32, "little")), False))

    # Negative envelope checks.
    def flipped(i):
        b = bytearray(raw)
        b[i] ^= 0x01
        return bytes(b)

    for off, what in [(20, "room_id"), (40, "author_tag"), (57, "timestamp"), (70, "nonce"), (200, "ciphertext"),
                      (357, "AEAD tag"), (400, "room_sig")]:
        check(f"negative: flipped {what} byte (offset {off}) fails the room signature",
              lambda off=off: refused("RoomSignature", lambda: View(flipped(off)).verify_room_signature()))
    check("negative: flipped room_id byte, opened by a member, is another room",
          lambda: refused("WrongRoom", lambda: View(flipped(20)).open(keys)))
    check("negative: flipped ciphertext byte, opened by a member, fails the room signature first",
          lambda: refused("RoomSignature", lambda: View(flipped(200)).open(keys)))
    check("negative: flipped ct_len byte is refused structurally",
          lambda: refused("Truncated", lambda: View(flipped(85))))
    check("negative: version 2", lambda: refused("Version", lambda: View(b"\x02" + raw[1:])))
    check("negative: kind 2", lambda: refused("Kind", lambda: View(raw[:1] + b"\x02" + raw[2:])))
    check("negative: truncated by one byte", lambda: refused("Truncated", lambda: View(raw[:-1])))
    check("negative: one trailing byte", lambda: refused("TrailingBytes", lambda: View(raw + b"\x00")))
    check("negative: over 64 KiB", lambda: refused("TooLarge", lambda: View(raw + bytes(65536))))
    check("negative: other room's keys", lambda: refused("WrongRoom", lambda: View(raw).open(RoomKeys(bytes(32)))))

    def resign(body):
        """A member's power: re-sign the room layer of modified bytes."""
        return body + ed25519_sign(keys.sign_seed, DOMAIN_ENVELOPE + body)

    check("negative: flipped ciphertext byte, room layer re-signed, fails to decrypt",
          lambda: refused("Decrypt", lambda: View(resign(flipped(200)[:-64])).open(keys)))

    def reencrypt(plain, tag=None, new_nonce=None):
        n = nonce if new_nonce is None else new_nonce
        hdr = bytearray(raw[:86])
        if tag is not None:
            hdr[34:50] = tag
        hdr[58:82] = n
        hdr[82:86] = (len(plain) + 16).to_bytes(4, "big")
        hdr = bytes(hdr)
        return resign(hdr + crypto_aead_xchacha20poly1305_ietf_encrypt(plain, hdr, n, keys.aead_key))

    plain = crypto_aead_xchacha20poly1305_ietf_decrypt(raw[86:358], raw[:86], nonce, keys.aead_key)
    check("negative: another author's plaintext re-encrypted under a new nonce (a copy with a new id)",
          lambda: refused("AuthorSignature", lambda: View(reencrypt(plain, new_nonce=bytes(24))).open(keys)))
    check("re-encrypting under the same nonce gives back the same bytes (same id)",
          lambda: eq(reencrypt(plain), raw))
    altered_text = plain[:41] + b"N" + plain[42:]  # "Meet" -> "Neet", author signature kept
    check("negative: altered text under the author's old signature",
          lambda: refused("AuthorSignature", lambda: View(reencrypt(altered_text)).open(keys)))
    check("negative: wrong author tag in the header",
          lambda: refused("AuthorTag", lambda: View(reencrypt(plain, tag=bytes(16))).open(keys)))
    check("negative: non-zero padding byte",
          lambda: refused("Padding", lambda: View(reencrypt(plain[:-1] + b"\x01")).open(keys)))
    check("negative: body kind 3", lambda: refused("Kind", lambda: View(reencrypt(plain[:36] + b"\x03" + plain[37:])).open(keys)))
    check("negative: a text relabelled as a receipt (31 bytes is no list of ids)",
          lambda: refused("FieldLength", lambda: View(reencrypt(plain[:36] + b"\x02" + plain[37:])).open(keys)))
    check("negative: name_len 65", lambda: refused("FieldLength", lambda: View(reencrypt(plain[:32] + b"\x41" + plain[33:])).open(keys)))
    check("negative: plaintext not padded to a multiple of 256",
          lambda: refused("Padding", lambda: View(reencrypt(plain[:136])).open(keys)))
    check("negative: a whole extra block of zero padding (a second copy under the same nonce)",
          lambda: refused("Padding", lambda: View(reencrypt(plain + bytes(PAD_BLOCK))).open(keys)))
    xp = v["extra_padding"]
    xraw = h(xp["bytes"])
    check("extra_padding: is the text envelope re-encrypted with one more zero block",
          lambda: eq(xraw, reencrypt(plain + bytes(PAD_BLOCK))))
    check("extra_padding: message_id = SHA-256(bytes), not the text envelope's",
          lambda: eq((message_id(xraw).hex(), xp["message_id"] != env["message_id"]), (xp["message_id"], True)))

    def xp_room_sig():
        View(xraw).verify_room_signature()
        return True

    check("extra_padding: its room signature verifies", xp_room_sig)
    check("extra_padding: refused with the vector's error",
          lambda: refused(xp["error"], lambda: View(xraw).open(keys)))

    # Invite.
    def parsed():
        i = invite_parse(inv["uri"])
        got = (i["secret"].hex(), i["inviter"].hex(), i["room_name"], i["addrs"])
        return eq(got, (inv["room_secret"], inv["inviter"], inv["room_name"], inv["addrs"]))

    check("invite: URI parses to the listed fields", parsed)
    check("invite: inviter is the vector author", lambda: eq(inv["inviter"], auth["public_key"]))
    check("invite: room secret is the kdf room secret", lambda: eq(inv["room_secret"], kdf["room_secret"]))
    check("invite: re-encodes identically",
          lambda: eq(invite_to_uri(h(inv["room_secret"]), h(inv["inviter"]), inv["room_name"], inv["addrs"]), inv["uri"]))
    check("invite: surrounding white space and an upper-case prefix are accepted",
          lambda: eq(invite_parse("  \n" + "PEDDLENET://JOIN/" + inv["uri"][17:] + "\t ")["room_name"], inv["room_name"]))

    payload = b64url_decode_strict(inv["uri"][17:])

    def uri_of(b):
        return INVITE_PREFIX + base64.urlsafe_b64encode(b).decode().rstrip("=")

    check("negative: invite with a wrong checksum",
          lambda: refused("InviteChecksum", lambda: invite_parse(uri_of(payload[:-1] + bytes([payload[-1] ^ 1])))))
    check("negative: invite with an altered secret byte",
          lambda: refused("InviteChecksum", lambda: invite_parse(uri_of(payload[:5] + bytes([payload[5] ^ 1]) + payload[6:]))))
    check("negative: invite with another scheme",
          lambda: refused("InviteScheme", lambda: invite_parse("peddlenet://jain/" + inv["uri"][17:])))
    check("negative: invite with base64 padding",
          lambda: refused("InviteEncoding", lambda: invite_parse(inv["uri"] + "==")))
    check("negative: invite with inner white space",
          lambda: refused("InviteEncoding", lambda: invite_parse(inv["uri"][:40] + " " + inv["uri"][40:])))
    check("negative: invite cut short",
          lambda: refused("InviteChecksum", lambda: invite_parse(uri_of(payload[:-8]))))

    def with_sum(body):
        return uri_of(body + hashlib.sha256(body).digest()[:4])

    check("negative: invite version 2",
          lambda: refused("Version", lambda: invite_parse(with_sum(b"\x02" + payload[1:-4]))))
    check("negative: invite with 5 addresses",
          lambda: refused("FieldLength", lambda: invite_parse(with_sum(payload[:75] + b"\x05" + payload[76:-4]))))
    check("negative: invite with a blank room name",
          lambda: refused("Empty", lambda: invite_parse(with_sum(payload[:66] + b"         " + payload[75:-4]))))

    # §8 set reconciliation
    sv = v["sync"]
    check("sync: fingerprint of no items", lambda: eq(fingerprint([]).hex(), "2c34ce1df23b838c5abf2a7f6437cca3"))
    check("sync: fingerprint wraps mod 2^256",
          lambda: eq(fingerprint([(0, b"\xff" * 32), (1, b"\x01" + bytes(31))]).hex(), "1de986ac168dcfb8a52b6320497a49a9"))
    it0 = sync_item(0)
    check("sync: item 0", lambda: eq((it0[1].hex(), prefix(it0).hex()), (sv["item_0_id"], sv["item_0_prefix"])))
    check("sync: check of item 0", lambda: eq(sk_check(prefix(it0)).hex(), sv["item_0_check"]))
    check("sync: cells of item 0, m = 8", lambda: eq(sk_cells_of(prefix(it0), 8), sv["item_0_cells_m8"]))
    check("sync: sketch of items 0, 1, 2 with m = 2",
          lambda: eq(b"".join(k + c for k, c in sk_build([prefix(sync_item(i)) for i in range(3)], 2)).hex(),
                     sv["sketch_items_0_1_2_m2"]))
    set_a = sorted(sync_item(i) for i in range(40) if i != 7)
    set_b = sorted(sync_item(i) for i in range(41) if i != 23)
    ra, rb = Reconciler(), Reconciler()
    ex = {}

    def exchange():
        ex["m1"] = ra.initiate(set_a)
        ex["m2"] = rb.respond(set_b, sync_decode(sync_encode(ex["m1"])))
        ex["m3"] = ra.respond(set_a, sync_decode(sync_encode(ex["m2"])))
        ex["m4"] = rb.respond(set_b, sync_decode(sync_encode(ex["m3"])))
        return True

    check("sync: the exchange runs", exchange)
    check("sync: A's first message", lambda: eq(sync_encode(ex["m1"]).hex(), sv["exchange_a_to_b_1"]))
    check("sync: B's answer, with a sketch", lambda: eq(sync_encode(ex["m2"]).hex(), sv["exchange_b_to_a_1"]))
    check("sync: A's last message", lambda: eq(sync_encode(ex["m3"]).hex(), sv["exchange_a_to_b_2"]))
    check("sync: B does not answer a final message", lambda: eq(ex["m4"], None))
    check("sync: what A lacks", lambda: eq([p.hex() for p in ra.need], sv["exchange_a_needs"]))
    check("sync: what B lacks", lambda: eq([p.hex() for p in rb.need], sv["exchange_b_needs"]))
    check("sync: messages decode and re-encode unchanged",
          lambda: eq([sync_encode(sync_decode(h(sv[k]))).hex() for k in ("exchange_a_to_b_1", "exchange_b_to_a_1")],
                     [sv["exchange_a_to_b_1"], sv["exchange_b_to_a_1"]]))
    check("sync: a decoder that predates sketches reads the marker",
          lambda: eq(sync_decode(h(sv["exchange_a_to_b_1"]), max_mode=3)[0], MARKER))
    old = Reconciler()
    check("sync: a responder answers a message without the marker without sketches",
          lambda: eq(any(m[0] == "sketch" for _, m in old.respond(set_b, ex["m1"][1:])), False))
    m2 = h(sv["exchange_b_to_a_1"])
    check("negative: sync mode 4 for a decoder that predates sketches",
          lambda: refused_sync("Mode", lambda: sync_decode(m2, max_mode=3)))
    fp0 = bytes(16)
    check("negative: sync sketch spanning past the first range",
          lambda: refused_sync("Malformed", lambda: sync_decode(h("010000") + b"\x04" + fp0 + h("0101") + bytes(72))))
    check("negative: sync sketch spanning a Skip range",
          lambda: refused_sync("Malformed", lambda: sync_decode(h("01020000") + h("0000") + b"\x04" + fp0 + h("0101") + bytes(72))))
    check("negative: sync sketch without cells",
          lambda: refused_sync("Malformed", lambda: sync_decode(h("010000") + b"\x04" + fp0 + h("0000"))))
    check("negative: sync sketch cut short",
          lambda: refused_sync("Truncated", lambda: sync_decode(h("010000") + b"\x04" + fp0 + h("0001") + bytes(71))))
    check("negative: sync mode 5", lambda: refused_sync("Mode", lambda: sync_decode(h("01000005"))))

    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
