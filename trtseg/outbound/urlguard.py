"""Outbound URL guard: the server makes requests to URLs that API callers choose (webhooks, camera sources).

Such a URL must not reach what only the server can reach. The host is resolved and every address
it resolves to is checked:

- refused always: link-local (169.254.0.0/16, fe80::/10, where cloud metadata services live),
  the known metadata addresses (fd00:ec2::254, Alibaba's 100.100.100.200), multicast, broadcast;
- refused unless allowed: loopback (127.0.0.0/8, ::1, and 0.0.0.0/::, which connect to this host),
  private networks (allowed by default: receivers on the site's network are common);
- refused on any host: the cluster's own ports (Ray GCS, dashboard, client, agent; Serve).

IPv4 addresses inside IPv6 (::ffff:a.b.c.d, 64:ff9b::a.b.c.d) are judged as the IPv4 address.
The result carries the address that was checked; senders connect to exactly that address
(``CheckedUrl.pinned_url`` plus a Host header and, for https, the original name for SNI and
certificate verification), so a name that resolves differently a moment later (DNS rebinding)
gets nowhere.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

# Camera sources the server connects to (file sources are checked against ApiConfig.file_source_dir instead).
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt")
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443, "mqtt": 1883}
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure/OpenStack metadata at 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
)
LOOPBACK = tuple(ipaddress.ip_network(net) for net in ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"))
PRIVATE = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundUrlError(ValueError):
    """An outbound URL that may not be used; the message names the field and is safe to show."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """What outbound URLs may reach (built from OutboundConfig with ``policy_from_config``)."""

    allow_loopback: bool = False
    allow_private: bool = True
    blocked_ports: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL whose host resolved to ``ip``, which passed the policy."""

    scheme: str
    host: str  # as written (lower case), without brackets
    port: int
    ip: str
    path: str  # path and query, e.g. '/hook?x=1'
    username: str | None = None
    password: str | None = None

    @property
    def host_is_ip(self) -> bool:
        return _parse_ip(self.host) is not None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS.get(self.scheme) else f"{host}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name (and no credentials)."""
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        path, _, query = self.path.partition("?")
        return urlunsplit((self.scheme, f"{ip}:{self.port}", path or "/", query, ""))

    @property
    def sni_hostname(self) -> str | None:
        """The name TLS must present and verify (None when the URL's host is an address)."""
        return None if self.host_is_ip else self.host


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _effective(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped or NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _in(ip: IPAddress, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def address_problem(ip_text: str, port: int, policy: GuardPolicy) -> str | None:
    """Why ``ip_text:port`` may not be reached under ``policy``, or None."""
    parsed = _parse_ip(ip_text)
    if parsed is None:
        return f"{ip_text!r} is not an IP address"
    ip = _effective(parsed)
    if _in(ip, ALWAYS_REFUSED):
        return f"address {ip} is link-local, multicast or a cloud metadata address (always refused)"
    if _in(ip, LOOPBACK) and not policy.allow_loopback:
        return f"address {ip} is loopback (refused unless outbound.allow_loopback is set)"
    if _in(ip, PRIVATE) and not policy.allow_private:
        return f"address {ip} is on a private network (refused: outbound.allow_private_networks is off)"
    if port in policy.blocked_ports:
        return f"port {port} is one of the cluster's own (refused; outbound.blocked_ports)"
    return None


def check_url(
    url: str,
    *,
    field: str,
    policy: GuardPolicy,
    schemes: Iterable[str] = ("http", "https"),
    resolver: Resolver = socket.getaddrinfo,
) -> CheckedUrl:
    """Resolve ``url``'s host and check every address; the first one is the one to connect to.

    Raises OutboundUrlError naming ``field`` for a URL that does not parse, has another scheme, does
    not resolve, or resolves to any refused address (one bad record is enough: the resolver decides
    which one a client would use).
    """
    allowed = tuple(schemes)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise OutboundUrlError(field, f"URL does not parse ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in allowed:
        raise OutboundUrlError(field, f"scheme {scheme or '(none)'!r} is not allowed; use {', '.join(allowed)}")
    host = (parts.hostname or "").lower()
    if not host:
        raise OutboundUrlError(field, "URL has no host")
    port = port or DEFAULT_PORTS.get(scheme)
    if port is None:
        raise OutboundUrlError(field, f"a {scheme} URL needs a port")
    literal = _parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise OutboundUrlError(field, f"host {host!r} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OutboundUrlError(field, f"host {host!r} resolves to no address")
    for address in addresses:
        problem = address_problem(address, port, policy)
        if problem:
            shown = problem if literal is not None else f"host {host!r} resolves to {problem.removeprefix('address ')}"
            raise OutboundUrlError(field, shown)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return CheckedUrl(
        scheme=scheme,
        host=host,
        port=port,
        ip=addresses[0].split("%", 1)[0],
        path=path or "/",
        username=parts.username,
        password=parts.password,
    )


def policy_from_config(outbound: Any, extra_ports: Iterable[int] = ()) -> GuardPolicy:
    """The policy of an OutboundConfig; ``extra_ports``: the cluster's configured ports (``cluster_ports``)."""
    return GuardPolicy(
        allow_loopback=bool(outbound.allow_loopback),
        allow_private=bool(outbound.allow_private_networks),
        blocked_ports=frozenset(outbound.blocked_ports) | frozenset(extra_ports)
        if outbound.blocked_ports
        else frozenset(),
    )


def cluster_ports(system: Any) -> set[int]:
    """The ports this system's own configuration opens: Ray's head (GCS) and dashboard, the API (Serve)."""
    ports = {int(system.cluster.head_port), int(system.api.port)}
    if system.cluster.dashboard_port:
        ports.add(int(system.cluster.dashboard_port))
    return ports
