"""Camera source URLs: what may be opened, with which FFmpeg options, and how it is shown in logs.

A camera URL comes from users (configuration, HTTP API), and FFmpeg will happily open local files,
chain protocols (``concat:``, ``subfile:``, ``crypto+file:``) or follow an HLS playlist to
``file:///etc/passwd``. Every source is therefore checked against an allow-list of schemes, opened
with a per-scheme ``protocol_whitelist``, and a ``file`` source must lie inside one configured
directory (resolved; ``..`` and symbolic links refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from trtseg.config.camera import CameraConfig

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt")
ALLOWED_SCHEMES = (*NETWORK_SCHEMES, "file")

# FFmpeg protocols each scheme may use, nested ones included (an HLS playlist over http fetches its
# segments over http(s) only: never file). Never: file (except for file sources), concat, subfile, pipe, data.
PROTOCOL_WHITELISTS: dict[str, str] = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp,tls",
    "rtsps": "rtsps,rtsp,rtp,srtp,udp,tcp,tls",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "srt": "srt,udp",
    "file": "file",
}

# Containers a file source may be (demuxer names as FFmpeg reports them): no playlists (hls, concat,
# ffconcat) that could point elsewhere on the disk.
FILE_FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,h264,hevc,mjpeg,asf,nut,ivf,m4v"

SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pass", "pwd", "passphrase", "token", "key", "secret", "auth", "signature", "sig"}
)
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+)")


class SourceError(ValueError):
    """A camera source that may not be opened; the message says why and is safe to show."""


@dataclass(frozen=True, slots=True)
class Source:
    """A validated source: the URL FFmpeg opens, its scheme, and whether it is a local file."""

    url: str
    scheme: str

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"


def parse_source(url: str, file_dir: str | Path | None) -> Source:
    """Validate ``url`` and return what FFmpeg should open; raise SourceError with the reason."""
    if not isinstance(url, str) or not url.strip():
        raise SourceError("source is empty")
    url = url.strip()
    if _CONTROL.search(url):
        raise SourceError("source contains whitespace or control characters")
    if "://" not in url and not url.lower().startswith("file:"):
        return Source(_file_url(url, file_dir), "file")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise SourceError(f"scheme '{scheme}' is not allowed; use one of {', '.join(ALLOWED_SCHEMES)}")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError("file:// URLs may not name a host")
        return Source(_file_url(unquote(parts.path), file_dir), "file")
    if not parts.hostname:
        raise SourceError(f"{scheme} URL has no host")
    if "+" in parts.netloc.split("@")[-1] or "|" in url:
        raise SourceError("protocol chaining characters are not allowed in the host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise SourceError(f"bad port in source URL: {exc}") from None
    return Source(urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment)), scheme)


def validate_source(url: str, file_dir: str | Path | None) -> str:
    """The URL FFmpeg should open for ``url`` (contract: docs/CONTRACTS.md); SourceError when refused."""
    return parse_source(url, file_dir).url


def _file_url(path_text: str, file_dir: str | Path | None) -> str:
    """A ``file:`` URL for a path that lies inside ``file_dir`` without ``..`` or symbolic links."""
    if file_dir is None:
        raise SourceError("file sources are disabled: no media directory is configured")
    if not path_text:
        raise SourceError("file source has no path")
    if ".." in PurePosixPath(path_text).parts:
        raise SourceError("'..' is not allowed in a file source")
    root = Path(file_dir).resolve(strict=False)
    raw = Path(path_text)
    candidate = raw if raw.is_absolute() else root / raw
    relative: Path | None = None
    # The directory may be spelled through a symbolic link of its own (configured, not user given).
    for spelling in (root, Path(file_dir).absolute()):
        try:
            relative = candidate.relative_to(spelling)
        except ValueError:
            continue
        candidate = root / relative
        break
    if relative is None:
        raise SourceError("file source lies outside the media directory")
    walk = root
    for part in relative.parts:
        walk = walk / part
        if walk.is_symlink():
            raise SourceError("symbolic links are not allowed in a file source")
    resolved = candidate.resolve(strict=False)
    if resolved != root and root not in resolved.parents:
        raise SourceError("file source lies outside the media directory")
    if not resolved.is_file():
        raise SourceError(f"file source '{relative}' does not exist or is not a regular file")
    return f"file:{resolved}"


def protocol_whitelist(scheme: str) -> str:
    """FFmpeg's ``protocol_whitelist`` for a scheme (KeyError for a scheme that is not allowed)."""
    return PROTOCOL_WHITELISTS[scheme.lower()]


def ffmpeg_input_options(url: str, camera: CameraConfig) -> dict[str, str]:
    """FFmpeg/PyAV input options for an already validated URL: whitelist, timeouts, transport.

    Timeouts are microseconds. Option names hold for FFmpeg 5.1 to 8: rtsp's socket timeout is
    ``timeout`` (``stimeout`` was removed in 5.0); rtmp has no I/O ``timeout`` (its ``timeout`` means
    "listen"), so it gets the generic ``rw_timeout``.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else "file"
    options: dict[str, str] = {"protocol_whitelist": protocol_whitelist(scheme)}
    timeout_us = str(int(camera.open_timeout_s * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        options.update(rtsp_transport=camera.rtsp_transport, timeout=timeout_us)
    elif scheme in ("rtmp", "rtmps"):
        options.update(rw_timeout=timeout_us)
    elif scheme in ("http", "https"):
        options.update(rw_timeout=timeout_us, timeout=timeout_us, reconnect="1", reconnect_streamed="1")
        options.update(reconnect_delay_max="5")
    elif scheme == "srt":
        options.update(timeout=timeout_us, rw_timeout=timeout_us)
    elif scheme == "file":
        options.update(format_whitelist=FILE_FORMAT_WHITELIST)
    return options


def redact_url(url: str) -> str:
    """The URL with its password (and secret-looking query values) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside a message (FFmpeg errors quote the URL they failed on) redacted."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(1)), text)
