"""Source URL safety: allowed and refused schemes, the media directory, FFmpeg options, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trtseg.config import CameraConfig
from trtseg.sources import (
    SourceError,
    ffmpeg_input_options,
    parse_source,
    protocol_whitelist,
    redact_text,
    redact_url,
    validate_source,
)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "clip.mp4").write_bytes(b"\x00" * 16)
    (root / "sub" / "b.mkv").write_bytes(b"\x00" * 16)
    (tmp_path / "secret.mp4").write_bytes(b"\x00" * 16)
    return root


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5:554/stream1",
        "rtsps://cam.example.com/live",
        "rtmp://127.0.0.1:1935/live/cam",
        "rtmps://host/app/key",
        "http://host/live/index.m3u8",
        "https://host/video.mp4",
        "srt://host:9000?mode=caller",
    ],
)
def test_network_schemes_are_allowed(url: str) -> None:
    assert validate_source(url, None) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://host/a.mp4", "not allowed"),
        ("concat:/etc/passwd|/etc/hosts", "file sources are disabled"),
        ("subfile,,start,0,end,0,,:/etc/passwd", "file sources are disabled"),
        ("pipe://0", "not allowed"),
        ("data://text/plain;base64,AAAA", "not allowed"),
        ("crypto+file:///etc/passwd", "not allowed"),
        ("udp://239.0.0.1:1234", "not allowed"),
        ("rtsp:///nohost", "no host"),
        ("rtsp://host/a b", "whitespace"),
        ("rtsp://host/a\nb", "whitespace"),
        ("", "empty"),
        ("rtsp://host:99999/x", "bad port"),
    ],
)
def test_refused_sources_say_why(url: str, reason: str) -> None:
    with pytest.raises(SourceError, match=reason):
        validate_source(url, None)


def test_file_inside_media_directory(media: Path) -> None:
    expected = f"file:{(media / 'clip.mp4').resolve()}"
    assert validate_source("clip.mp4", media) == expected
    assert validate_source(f"file://{media / 'clip.mp4'}", media) == expected
    assert validate_source(str(media / "clip.mp4"), media) == expected
    assert validate_source("sub/b.mkv", media) == f"file:{(media / 'sub' / 'b.mkv').resolve()}"
    assert parse_source("clip.mp4", media).is_file


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../secret.mp4", r"'\.\.'"),
        ("sub/../../secret.mp4", r"'\.\.'"),
        ("file://{root}/../secret.mp4", r"'\.\.'"),
        ("{tmp}/secret.mp4", "outside"),
        ("/etc/passwd", "outside"),
        ("file://otherhost/clip.mp4", "host"),
        ("missing.mp4", "does not exist"),
        ("sub", "not a regular file"),
    ],
)
def test_file_escapes_are_refused(media: Path, path: str, reason: str) -> None:
    url = path.format(root=media, tmp=media.parent)
    with pytest.raises(SourceError, match=reason):
        validate_source(url, media)


def test_symlinks_are_refused(media: Path) -> None:
    os.symlink(media.parent / "secret.mp4", media / "link.mp4")
    os.symlink(media.parent, media / "up")
    with pytest.raises(SourceError, match="symbolic link"):
        validate_source("link.mp4", media)
    with pytest.raises(SourceError, match="symbolic link"):
        validate_source("up/secret.mp4", media)


def test_protocol_prefixes_stay_plain_files(media: Path) -> None:
    """Without '://' a source is a path in the media directory, never an FFmpeg protocol (concat:, subfile:)."""
    for url in ("concat:/etc/passwd|/etc/hosts", "subfile,,start,0,end,0,,:/etc/passwd"):
        with pytest.raises(SourceError, match="does not exist"):
            validate_source(url, media)
    (media / "concat:x.mp4").write_bytes(b"\x00")
    assert validate_source("concat:x.mp4", media) == f"file:{(media / 'concat:x.mp4').resolve()}"


def test_file_sources_need_a_directory(media: Path) -> None:
    with pytest.raises(SourceError, match="disabled"):
        validate_source(str(media / "clip.mp4"), None)


def test_protocol_whitelists_never_reach_files() -> None:
    assert protocol_whitelist("rtsp") == "rtsp,rtp,srtp,udp,tcp,tls"
    assert protocol_whitelist("http") == "http,https,tcp,tls,crypto"
    assert protocol_whitelist("rtmp") == "rtmp,tcp"
    assert protocol_whitelist("file") == "file"
    for scheme in ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt"):
        allowed = protocol_whitelist(scheme).split(",")
        assert not {"file", "concat", "subfile", "pipe", "data"} & set(allowed), scheme
    with pytest.raises(KeyError):
        protocol_whitelist("ftp")


def test_input_options_per_scheme() -> None:
    camera = CameraConfig(id="c", source="rtsp://h/x", open_timeout_s=3.5)
    rtsp = ffmpeg_input_options("rtsp://h/x", camera)
    assert rtsp == {"protocol_whitelist": "rtsp,rtp,srtp,udp,tcp,tls", "rtsp_transport": "tcp", "timeout": "3500000"}
    assert "stimeout" not in rtsp
    udp = ffmpeg_input_options("rtsp://h/x", camera.model_copy(update={"rtsp_transport": "udp"}))
    assert udp["rtsp_transport"] == "udp"
    rtmp = ffmpeg_input_options("rtmp://h/app/x", camera)
    assert rtmp["rw_timeout"] == "3500000" and "timeout" not in rtmp  # rtmp's `timeout` would mean "listen"
    http = ffmpeg_input_options("https://h/a.m3u8", camera)
    assert http["protocol_whitelist"] == "http,https,tcp,tls,crypto" and http["rw_timeout"] == "3500000"
    local = ffmpeg_input_options("file:/m/a.mp4", camera)
    assert local["protocol_whitelist"] == "file" and "hls" not in local["format_whitelist"].split(",")


def test_redaction() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert redact_url("rtsp://admin@10.0.0.5/s") == "rtsp://admin@10.0.0.5/s"
    assert redact_url("rtsp://10.0.0.5/s") == "rtsp://10.0.0.5/s"
    assert redact_url("rtmp://h/live/cam?token=abc&x=1") == "rtmp://h/live/cam?token=***&x=1"
    assert redact_url("srt://h:9000?passphrase=x&streamid=a") == "srt://h:9000?passphrase=***&streamid=a"
    text = "Connection to rtsp://u:p%40ss@host/x failed: refused"
    assert redact_text(text) == "Connection to rtsp://u:***@host/x failed: refused"
    assert "hunter2" not in redact_text("open 'rtsp://a:hunter2@h/x' and https://b:hunter2@h/y")
