"""The node-local channel's parts on real sockets and real shared memory, without Ray."""

from __future__ import annotations

import os
import socket
import struct
import threading

import numpy as np
import pytest

from tests.core.gpu_doubles import DeviceImage, RecordingLocker
from trtseg.channel import (
    ChannelClosed,
    Connection,
    FrameSlots,
    Listener,
    MappedSlots,
    channel_available,
    new_address,
    printable,
)

pytestmark = pytest.mark.skipif(not channel_available(), reason="the channel needs Linux (memfd, abstract sockets)")


def _pair() -> tuple[Connection, Connection]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Connection(left), Connection(right)


def test_messages_keep_order_and_size_across_large_payloads() -> None:
    sender, receiver = _pair()
    big = np.arange(3_000_000, dtype=np.uint8)  # several receive chunks
    messages = [("small", 1), {"big": big}, ("small", 2)]
    thread = threading.Thread(target=lambda: [sender.send(m) for m in messages])
    thread.start()
    got = [receiver.recv()[0] for _ in messages]
    thread.join()
    assert got[0] == ("small", 1) and got[2] == ("small", 2)
    np.testing.assert_array_equal(got[1]["big"], big)


def test_ring_memory_is_shared_through_the_passed_descriptor() -> None:
    sender, receiver = _pair()
    ring = FrameSlots((4, 6, 3), slots=3)
    sender.send(("ring", ring.info), (ring.fd,))
    sender.send(("after", 1))
    (kind, info), fds = receiver.recv()
    assert kind == "ring" and len(fds) == 1
    assert receiver.recv() == (("after", 1), [])  # the descriptor came with its own message only
    rings = MappedSlots()
    rings.add(info, fds[0])
    picture = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    ring.write(1, picture)
    np.testing.assert_array_equal(rings.view(info.ring_id, 1), picture)
    ring.write(1, 255 - picture)  # the reader sees the writer's memory, not a copy
    np.testing.assert_array_equal(rings.view(info.ring_id, 1), 255 - picture)
    assert not rings.view(info.ring_id, 0).any()
    with pytest.raises(KeyError, match="never announced"):
        rings.view("elsewhere", 0)
    rings.close()
    ring.close()


def test_a_reader_keeps_only_its_newest_rings() -> None:
    rings = MappedSlots(keep=2)
    made = [FrameSlots((2, 2), slots=1) for _ in range(3)]
    for ring in made:
        rings.add(ring.info, os.dup(ring.fd))
    with pytest.raises(KeyError):
        rings.view(made[0].info.ring_id, 0)
    assert rings.view(made[2].info.ring_id, 0).shape == (2, 2)
    rings.close()
    for ring in made:
        ring.close()


def test_rings_are_page_locked_whole_once_and_released_on_close() -> None:
    locker = RecordingLocker()
    ring = FrameSlots((4, 6, 3), slots=3, locker=locker)
    assert ring.page_locked and len(locker.registered) == 1
    start, nbytes = locker.registered[0]
    assert nbytes == 3 * 4 * 6 * 3 and start == ring.view(0).ctypes.data  # the whole ring, one call
    reader_locker = RecordingLocker()
    rings = MappedSlots(locker=reader_locker)
    rings.add(ring.info, os.dup(ring.fd))
    assert rings.page_locked(ring.info.ring_id) and reader_locker.registered[0][1] == nbytes
    assert not rings.page_locked("elsewhere")
    rings.close()
    ring.close()
    assert reader_locker.unregistered == [reader_locker.registered[0][0]]
    assert locker.unregistered == [start]


def test_a_refused_registration_leaves_a_working_ring() -> None:
    locker = RecordingLocker(accept=False)
    ring = FrameSlots((2, 3), slots=2, locker=locker)
    assert not ring.page_locked
    picture = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(ring.write(0, picture), picture)
    ring.close()
    assert locker.unregistered == []  # nothing registered, nothing to release
    plain = FrameSlots((2, 3), slots=1)
    assert not plain.page_locked
    plain.close()


def test_a_device_picture_is_downloaded_into_its_slot() -> None:
    ring = FrameSlots((4, 6, 3), slots=2, locker=RecordingLocker())
    picture = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    device = DeviceImage(picture)
    assert ring.fits(device) and not ring.fits(DeviceImage(picture[:2]))
    view = ring.write(1, device)
    assert device.downloads == 1 and view.ctypes.data == ring.view(1).ctypes.data
    np.testing.assert_array_equal(ring.view(1), picture)
    ring.close()


def test_the_other_end_closing_ends_recv() -> None:
    sender, receiver = _pair()
    sender.send("last")
    sender.close()
    assert receiver.recv()[0] == "last"
    with pytest.raises(ChannelClosed):
        receiver.recv()
    with pytest.raises(ChannelClosed):
        sender.send("after close")


def test_a_malformed_header_closes_the_connection() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left.sendall(struct.pack("!IB", 2**31, 0))
    receiver = Connection(right)
    with pytest.raises(ChannelClosed, match="malformed"):
        receiver.recv()
    assert receiver.closed
    left.close()


def test_listener_serves_each_connection_and_close_wakes_readers() -> None:
    address = new_address("test", "echo")
    assert printable(address).startswith("@trtseg/test/echo/")
    served = threading.Event()

    def echo(connection: Connection) -> None:
        while True:
            message, _ = connection.recv()
            connection.send(("echo", message))
            served.set()

    listener = Listener(address, echo, name="echo")
    clients = [Connection.connect(address) for _ in range(3)]
    for i, client in enumerate(clients):
        client.send(i)
        assert client.recv()[0] == ("echo", i)
    assert served.is_set()
    listener.close()
    for client in clients:
        with pytest.raises(ChannelClosed):
            client.recv()
    with pytest.raises(ChannelClosed, match="cannot connect"):
        Connection.connect(address, timeout_s=0.5)


def test_ring_rejects_no_slots() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FrameSlots((2, 2), slots=0)
