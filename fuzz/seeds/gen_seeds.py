#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/.

decode: the test vectors of shared/ssm-protocol.md §16 plus a few frames built the same way.
channel: short operation scripts in the input format of fuzz_targets/channel.rs (see its module
documentation), each walking one start flow into the Ready state and a little beyond.

Run from anywhere: python3 fuzz/seeds/gen_seeds.py
"""

import hashlib
import os
import struct
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

# §16 test vectors.
TV1 = bytes.fromhex(
    "000000746f75747075745f73747265616d5f646174612020202020202020202020202020000000010000018bcfe5"
    "680000000000000000000000000000000001a508b5f073f31b16dd01e56bff48483e2cf24dba5fb0a30e26e83b2a"
    "c5b9e29e1b161e5c1fa7425e73043362938b9824000000010000000568656c6c6f"
)
TV2_HEX = (
    "0000007461636b6e6f776c65646765202020202020202020202020202020202020202020000000010000018bcfe5687b"
    "0000000000000000000000000000000399aabbccddeeff001122334455664788713a0a17057de630213f7292907ce384"
    "62812ea213a29366f537f68c6ab60e8500000000000000b07b2241636b6e6f776c65646765644d6573736167655479"
    "7065223a226f75747075745f73747265616d5f64617461222c2241636b6e6f776c65646765644d6573736167654964"
    "223a2264643031653536622d666634382d343833652d613530382d623566303733663331623136222c2241636b6e6f"
    "776c65646765644d65737361676553657175656e63654e756d626572223a302c22497353657175656e7469616c4d65"
    "7373616765223a747275657d"
)
TV3 = bytes.fromhex(
    "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000018bcfe5"
    "69c8000000000000000100000000000000008899aabbccddeeff0011223344554677d53ca1ea7dce87c11432052a"
    "8550ed2615cf715ca843c89710ed83325b691cba00000003000000157b22636f6c73223a38302c22726f7773223a"
    "32347d"
)
# TV4: "hello" sealed agent -> client under key bytes 0..31 with nonce 000102..0b.
TV4_PAYLOAD = bytes.fromhex("000102030405060708090a0b2f67ba77aa2797ff353b8a046d28236dcd9d057bbb")


def frame(mtype, seq, ptype, payload, flags=0, ms=1700000000000, mid=None, schema=1):
    u = uuid.UUID(mid or "dd01e56b-ff48-483e-a508-b5f073f31b16").bytes
    return (
        struct.pack(
            ">I32sIQqQ16s32sII",
            116,
            mtype.encode().ljust(32, b" "),
            schema,
            ms,
            seq,
            flags,
            u[8:] + u[:8],
            hashlib.sha256(payload).digest(),
            ptype,
            len(payload),
        )
        + payload
    )


def check_vectors():
    assert frame("output_stream_data", 0, 1, b"hello", flags=1) == TV1
    ack = (
        b'{"AcknowledgedMessageType":"output_stream_data",'
        b'"AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16",'
        b'"AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}'
    )
    tv2 = frame(
        "acknowledge", 0, 0, ack, flags=3, ms=1700000000123,
        mid="11223344-5566-4788-99aa-bbccddeeff00",
    )
    assert tv2 == bytes.fromhex(TV2_HEX)
    tv3 = frame(
        "input_stream_data", 1, 3, b'{"cols":80,"rows":24}', ms=1700000000456,
        mid="00112233-4455-4677-8899-aabbccddeeff",
    )
    assert tv3 == TV3
    return tv2


# ----- channel operation encoding (fuzz_targets/channel.rs) -----

def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def short(b):
    return bytes([len(b)]) + b


def op_raw(fr):
    return b"\x00" + u16(len(fr)) + fr


def op_stream(pt, body, form=0, seqsel=0, dir_=0):
    # dir, seq selector (0 = expected), payload type, form, then the payload's own fields
    return b"\x01" + bytes([dir_, seqsel, pt, form]) + body


def op_stream_bytes(pt, data, encrypt=False):
    return op_stream(pt, u16(len(data)) + data, form=0x80 if encrypt else 0)


def op_ack(sel=0, form=0):
    return b"\x04" + bytes([sel, form])


def op_ack_seq(seq, form=0):
    # selector 0xC0: the sequence number follows as an i64, then the form
    return b"\x04\xc0" + struct.pack(">q", seq) + bytes([form])


def op_channel_closed(text):
    return b"\x05\x00" + short(text)


def op_pause():
    return b"\x05\x01"


def op_start():
    return b"\x05\x02"


def op_advance_ms(ms):
    return b"\x06\x01" + u16(ms)


def op_advance_to_timer():
    return b"\x06\x03"


def op_send(data):
    return b"\x08" + u16(len(data)) + data


def op_resize(cols, rows):
    return b"\x09" + u32(cols) + u32(rows)


def op_close(reason):
    return b"\x0a\x04" + short(reason)


def op_reconnect():
    return b"\x0a\x05"


def op_provide_data_key(blob):
    return b"\x0b\x00" + short(blob)


def op_provide_decrypted_key():
    return b"\x0b\x02"


def op_handshake(sel, extra=b""):
    return b"\x0c" + bytes([sel]) + extra


def op_replay(i=0):
    return b"\x0e" + bytes([i])


CLIENT, AGENT, AGENT_HS, AGENT_KMS, AGENT_KMS_CHALLENGE = range(5)
SMALL_LIMITS = 0x80 | (1 << 3)  # reorder 0, send window 2, give up after 1 ms
SMALL_REORDER = 0x80 | 0x40 | (1 << 3) | 2  # reorder 2, send window 2, give up after 401 ms


def channel_seeds():
    seeds = {}
    seeds["client_plain"] = bytes([CLIENT, 0]) + b"".join([
        op_send(b"ls\n"),                      # held until ready
        op_resize(80, 24),
        op_raw(TV1),                           # first output: ready, flushes input and size
        op_ack(0), op_ack(1),
        op_stream_bytes(1, b"file.txt\r\n"),
        op_stream(12, u32(0)),                 # EXIT_CODE: 0
        op_replay(0),                          # duplicate
        op_advance_to_timer(),
        op_channel_closed(b""),
    ])
    seeds["client_handshake"] = bytes([CLIENT, 0]) + b"".join([
        op_handshake(0),                       # HandshakeRequest, Standard_Stream
        op_ack(0),
        op_handshake(2, short(b"")),           # HandshakeComplete
        op_send(b"echo hi\n"),
        op_stream_bytes(1, b"hi\r\n"),
        op_stream(10, u32(2)),                 # Flag TerminateSession
        op_advance_ms(300),
        op_reconnect(),
        op_ack_seq(1, form=2),                 # {"AcknowledgedMessageSequenceNumber":1}
        op_close(b"bye"),
    ])
    seeds["client_kms"] = bytes([CLIENT, 0]) + b"".join([
        op_handshake(0xC0),                    # with KMSEncryption and a Challenge
        op_provide_data_key(b"fuzz-blob"),     # key 00..3f: HandshakeResponse goes out
        op_handshake(1, short(b"0123456789abcdef")),  # EncChallengeRequest sealed 0..32
        op_handshake(2, short(b"encrypted")),  # HandshakeComplete
        op_stream_bytes(1, b"secret output", encrypt=True),
        op_send(b"whoami\n"),
        op_ack(0), op_ack(1), op_ack(2),
        op_stream_bytes(11, b"stderr", encrypt=True),
    ])
    seeds["client_out_of_order"] = bytes([CLIENT, SMALL_REORDER]) + b"".join([
        op_raw(TV1),
        op_stream(1, u16(1) + b"c", seqsel=11),  # seq expected + 2
        op_stream(1, u16(1) + b"b", seqsel=10),  # expected + 1
        op_stream(1, u16(1) + b"a"),
        op_send(b"a" * 3000),
        op_advance_to_timer(), op_advance_to_timer(), op_advance_to_timer(),
        op_stream(1, u16(1) + b"z", seqsel=12) + b"\x05",  # expected + 5
    ])
    seeds["agent_plain"] = bytes([AGENT, 0]) + b"".join([
        op_send("héllo €\n".encode()),
        op_ack(0),
        op_stream_bytes(1, b"ls\n"),
        op_raw(TV3),                           # size at seq 1
        op_pause(),
        op_send(b"$ "),
        op_start(),
        op_advance_to_timer(),
        b"\x0a\x02" + u32(0),                  # send_exit_code(0)
        b"\x0a\x01",                           # flush_output
        op_close(b""),
    ])
    seeds["agent_handshake"] = bytes([AGENT_HS, 0]) + b"".join([
        op_ack(0),
        op_handshake(0),                       # HandshakeResponse, SessionType success
        op_send(b"sh-5.2$ "),
        op_stream_bytes(1, b"id\n"),
        op_stream(3, u32(120) + u32(40)),
        op_advance_ms(20000),
    ])
    seeds["agent_kms_challenge"] = bytes([AGENT_KMS_CHALLENGE, 0]) + b"".join([
        op_ack(0),
        op_handshake(0x80),                    # response with ChallengeAcknowledgement
        op_provide_decrypted_key(),            # key 00..3f: EncChallengeRequest goes out
        op_ack(1),
        op_handshake(1),                       # the correct EncChallengeResponse
        op_stream_bytes(1, b"uname -a\n", encrypt=True),
        op_send(b"Linux\n"),
        op_ack(2), op_ack(3),
    ])
    seeds["agent_kms_timeout"] = bytes([AGENT_KMS, SMALL_LIMITS]) + b"".join([
        op_handshake(0),
        op_provide_decrypted_key(),
        op_advance_ms(16000),
        op_advance_to_timer(),
    ])
    return seeds


def decode_seeds(tv2):
    closed = (
        b'{"MessageId":"m","CreatedDate":"2023-11-14T22:13:20Z","DestinationId":"d",'
        b'"SessionId":"s-1","MessageType":"channel_closed","SchemaVersion":1,"Output":"bye"}'
    )
    return {
        "tv1_output": TV1,
        "tv2_acknowledge": tv2,
        "tv3_size": TV3,
        "tv4_encrypted_output": frame("output_stream_data", 2, 1, TV4_PAYLOAD),
        "channel_closed": frame("channel_closed", 0, 0, closed, flags=3),
        "start_publication": frame("start_publication", 0, 0, b""),
        "pause_publication_lenient": b"\x00\x00\x00\x00" + b"pause_publication".ljust(32, b"\x00")
        + bytes(84),
        "flag": frame("input_stream_data", 5, 10, b"\x00\x00\x00\x02"),
        "unknown_type": frame("agent_session_state", 0, 0, b"{}"),
    }


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    tv2 = check_vectors()
    write("decode", decode_seeds(tv2))
    write("channel", channel_seeds())


if __name__ == "__main__":
    main()
