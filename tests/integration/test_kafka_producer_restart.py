"""Idempotent producer state survives a restart of the server (graceful and
SIGKILL): a producer retrying a batch after the restart gets the offset of
the first append, not a second copy; the next sequence is appended; a gap is
OUT_OF_ORDER_SEQUENCE_NUMBER (45), an old sequence DUPLICATE_SEQUENCE_NUMBER
(46). Requests are built by hand so that producer id, epoch and sequences
are fully under the test's control."""
import signal
import socket
import struct
import time

import pytest

# ---- CRC-32C (Castagnoli), as RecordBatch v2 uses it ----

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---- encoding ----

def varint(n):
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record_batch(pid, epoch, seq, values, ts=1700000000000):
    recs = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(i) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, ts, ts + n - 1, pid, epoch, seq, n) + recs
    crc = crc32c(after_crc)
    batch_len = 4 + 1 + 4 + len(after_crc)  # leader epoch, magic, crc, rest
    return struct.pack(">qiibI", 0, batch_len, -1, 2, crc) + after_crc


def kstr(s):
    return struct.pack(">h", len(s)) + s


class Kafka:
    """One raw connection speaking fixed (non-flexible) request versions."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.corr = 0

    def close(self):
        self.sock.close()

    def call(self, key, ver, body):
        self.corr += 1
        msg = struct.pack(">hhih", key, ver, self.corr, 4) + b"test" + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        (n,) = struct.unpack(">i", self._recv(4))
        r = self._recv(n)
        assert struct.unpack(">i", r[:4])[0] == self.corr
        return r[4:]

    def _recv(self, n):
        b = b""
        while len(b) < n:
            d = self.sock.recv(n - len(b))
            if not d:
                raise ConnectionError("closed")
            b += d
        return b

    def init_producer_id(self):
        r = self.call(22, 0, struct.pack(">hi", -1, 60000))
        _, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        assert err == 0
        return pid, epoch

    def produce(self, topic, batch, acks=-1):
        """Produce v3 to partition 0: returns (error, base_offset)."""
        body = struct.pack(">hhi", -1, acks, 10000) + struct.pack(">i", 1) + kstr(topic) + \
            struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(batch)) + batch
        r = self.call(0, 3, body)
        off = 4 + 2 + len(topic) + 4 + 4  # topics[1], name, partitions[1], index
        err, base = struct.unpack(">hq", r[off:off + 10])
        return err, base

    def end_offset(self, topic):
        body = struct.pack(">i", -1) + struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1) + \
            struct.pack(">iq", 0, -1)
        r = self.call(2, 1, body)
        off = 4 + 2 + len(topic) + 4 + 4
        err, _ts, offset = struct.unpack(">hqq", r[off:off + 18])
        assert err == 0
        return offset


def values(seq, n):
    return [f"r{seq + i}".encode() for i in range(n)]


def produce_batches(k, topic, pid, epoch, nbatches, per):
    """Batches of |per| records with sequences 0, per, 2*per...: returns
    their base offsets."""
    bases = []
    for b in range(nbatches):
        err, base = k.produce(topic, record_batch(pid, epoch, b * per, values(b * per, per)))
        assert err == 0
        bases.append(base)
    return bases


def restart(s, how):
    if how == "sigkill":
        s.kill()
    else:
        assert s.stop(signal.SIGTERM) == 0
    s.start()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_retry_after_restart_is_deduplicated(make_server, how):
    s = make_server(["--streams.fsync", "always"])
    topic = b"idem-restart"
    k = Kafka(s.kafka_port)
    pid, epoch = k.init_producer_id()
    per, nb = 3, 6
    bases = produce_batches(k, topic, pid, epoch, nb, per)
    assert bases == [b * per for b in range(nb)]
    end = k.end_offset(topic)
    assert end == nb * per
    k.close()

    restart(s, how)

    k = Kafka(s.kafka_port)
    # The last batch again, byte for byte: its first offset, nothing appended.
    last = (nb - 1) * per
    assert k.produce(topic, record_batch(pid, epoch, last, values(last, per))) == (0, bases[-1])
    # Another of the last five.
    seq = (nb - 3) * per
    assert k.produce(topic, record_batch(pid, epoch, seq, values(seq, per))) == (0, bases[nb - 3])
    assert k.end_offset(topic) == end
    # Older than the five cached batches: DUPLICATE_SEQUENCE_NUMBER.
    assert k.produce(topic, record_batch(pid, epoch, 0, values(0, per)))[0] == 46
    # A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert k.produce(topic, record_batch(pid, epoch, nb * per + 5, values(0, 1)))[0] == 45
    assert k.end_offset(topic) == end
    # The next sequence is appended.
    assert k.produce(topic, record_batch(pid, epoch, nb * per, values(nb * per, 2))) == (0, end)
    assert k.end_offset(topic) == end + 2
    # A new producer starts fresh.
    pid2, epoch2 = k.init_producer_id()
    assert pid2 != pid
    assert k.produce(topic, record_batch(pid2, epoch2, 0, values(0, 1))) == (0, end + 2)
    k.close()


def test_many_segments_snapshot_and_sigkill(make_server):
    """Small segments: snapshots are taken as segments roll; after SIGKILL
    the state is the last snapshot plus the headers after it, and a second
    restart (graceful) keeps it too."""
    s = make_server(["--streams.fsync", "always", "--streams.segment_bytes", "4096", "--log_level", "debug"])
    topic = b"idem-segments"
    k = Kafka(s.kafka_port)
    pid, epoch = k.init_producer_id()
    other, oepoch = k.init_producer_id()
    per, nb = 4, 60
    big = b"x" * 200
    bases = []
    for b in range(nb):
        err, base = k.produce(topic, record_batch(pid, epoch, b * per, [big] * per))
        assert err == 0
        bases.append(base)
        if b % 7 == 0:  # a second producer, idle after a while
            assert k.produce(topic, record_batch(other, oepoch, b // 7, [b"o"]))[0] == 0
    end = k.end_offset(topic)
    k.close()
    s.kill()
    s.start()
    k = Kafka(s.kafka_port)
    last = (nb - 1) * per
    assert k.produce(topic, record_batch(pid, epoch, last, [big] * per)) == (0, bases[-1])
    assert k.end_offset(topic) == end
    assert k.produce(topic, record_batch(other, oepoch, 100, [b"o"]))[0] == 45
    k.close()
    assert "snapshot used" in s.read_log()
    restart(s, "sigterm")
    k = Kafka(s.kafka_port)
    assert k.produce(topic, record_batch(pid, epoch, last, [big] * per)) == (0, bases[-1])
    assert k.produce(topic, record_batch(pid, epoch, nb * per, [big])) == (0, end)
    k.close()


@pytest.mark.parametrize("policy", ["interval", "never"])
def test_sigkill_with_lazy_fsync(make_server, policy):
    """With fsync interval/never a SIGKILL keeps what was written to the
    files (the page cache survives a process kill): the retried batch is
    deduplicated, and nothing is ever stored twice."""
    s = make_server(["--streams.fsync", policy, "--streams.segment_bytes", "8192"])
    topic = b"idem-" + policy.encode()
    k = Kafka(s.kafka_port)
    pid, epoch = k.init_producer_id()
    per, nb = 2, 40
    bases = []
    for b in range(nb):
        err, base = k.produce(topic, record_batch(pid, epoch, b * per, [b"y" * 300] * per), acks=1)
        assert err == 0
        bases.append(base)
    end = k.end_offset(topic)
    k.close()
    time.sleep(0.3)  # a few loop iterations: the tail buffer is written
    s.kill()
    s.start()
    k = Kafka(s.kafka_port)
    assert k.end_offset(topic) == end
    for b in range(nb - 5, nb):
        assert k.produce(topic, record_batch(pid, epoch, b * per, [b"y" * 300] * per), acks=1) == (0, bases[b])
    assert k.end_offset(topic) == end
    k.close()


def test_producer_ids_never_reused_after_sigkill(make_server):
    """InitProducerId answers only once its id block's reservation is
    durable: however soon after an answer the server is killed, the ids
    handed out after the restart are all new. Rounds kill right after the
    first id of a run (the reservation write of that very request), after
    ids that cross a block boundary (1000 ids per block), and with several
    connections asking at once."""
    s = make_server(["--streams.fsync", "interval"])
    seen = set()
    for round_, n in enumerate([1, 1002, 3, 1]):
        conns = [Kafka(s.kafka_port) for _ in range(1 if n > 3 else 3)]
        ids = []
        for i in range(n):
            pid, epoch = conns[i % len(conns)].init_producer_id()
            assert epoch == 0
            ids.append(pid)
        assert len(set(ids)) == n
        assert not seen.intersection(ids), f"round {round_}: an id was handed out before"
        assert min(ids) > max(seen, default=0)
        seen.update(ids)
        s.kill()  # at once: no loop iteration of grace after the answer
        for c in conns:
            c.close()
        s.start()
    k = Kafka(s.kafka_port)
    pid, _ = k.init_producer_id()
    assert pid > max(seen)
    k.close()
