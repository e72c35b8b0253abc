"""The outbound URL guard: what a webhook (or camera source) URL may reach, judged after resolution."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.outbound.helpers import outbound_config
from trtseg.config import SystemConfig
from trtseg.outbound.urlguard import GuardPolicy, OutboundUrlError, check_url, cluster_ports, policy_from_config

STRICT = GuardPolicy(allow_loopback=False, blocked_ports=frozenset({6379, 8000, 8265}))
LOOPBACK_OK = GuardPolicy(allow_loopback=True, blocked_ports=frozenset({6379, 8000, 8265}))


def resolver_to(*addresses: str) -> Any:
    """A resolver that answers every name with ``addresses`` (what a hostile DNS would)."""

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        out = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            out.append((family, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://100.100.100.200/",  # Alibaba metadata
        "http://224.0.0.1/",
    ],
)
def test_link_local_and_metadata_refused_even_with_loopback_allowed(url: str) -> None:
    with pytest.raises(OutboundUrlError) as info:
        check_url(url, field="webhooks.0.url", policy=LOOPBACK_OK)
    assert str(info.value).startswith("webhooks.0.url: ")
    assert "always refused" in str(info.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/h", "http://[::1]:9000/h", "http://0.0.0.0:9000/h"])
def test_loopback_refused_unless_allowed(url: str) -> None:
    with pytest.raises(OutboundUrlError, match="loopback"):
        check_url(url, field="url", policy=STRICT)
    checked = check_url(url, field="url", policy=LOOPBACK_OK)
    assert checked.port == 9000


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(OutboundUrlError, match=r"host 'localhost' resolves to .*loopback"):
        check_url("http://localhost:9000/hook", field="webhooks.0.url", policy=STRICT)


def test_one_bad_record_among_good_ones_refuses_the_url() -> None:
    resolver = resolver_to("93.184.216.34", "169.254.169.254")
    with pytest.raises(OutboundUrlError, match=r"169\.254\.169\.254"):
        check_url("https://hooks.example.com/x", field="url", policy=STRICT, resolver=resolver)


@pytest.mark.parametrize("port", [6379, 8000, 8265])
def test_cluster_ports_refused_on_any_host(port: int) -> None:
    with pytest.raises(OutboundUrlError, match=f"port {port}"):
        check_url(f"http://127.0.0.1:{port}/", field="url", policy=LOOPBACK_OK)
    with pytest.raises(OutboundUrlError, match=f"port {port}"):
        check_url(f"http://10.1.2.3:{port}/", field="url", policy=LOOPBACK_OK)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://h/", "//nohost", "hook"])
def test_other_schemes_refused_naming_the_field(url: str) -> None:
    with pytest.raises(OutboundUrlError, match=r"^webhooks\.alerts\.url: scheme"):
        check_url(url, field="webhooks.alerts.url", policy=LOOPBACK_OK)


def test_bad_port_and_unresolvable_host() -> None:
    with pytest.raises(OutboundUrlError, match="does not parse"):
        check_url("http://example.com:99999/", field="url", policy=STRICT)

    def fail(*_: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(OutboundUrlError, match="does not resolve"):
        check_url("http://no-such-host.invalid/", field="url", policy=STRICT, resolver=fail)


def test_checked_url_pins_the_address_and_keeps_the_name() -> None:
    checked = check_url(
        "https://user:pw@hooks.example.com:8443/a/b?token=x",
        field="url",
        policy=STRICT,
        resolver=resolver_to("93.184.216.34"),
    )
    assert checked.ip == "93.184.216.34"
    assert checked.pinned_url == "https://93.184.216.34:8443/a/b?token=x"
    assert checked.host_header == "hooks.example.com:8443"
    assert checked.sni_hostname == "hooks.example.com"
    assert (checked.username, checked.password) == ("user", "pw")
    v6 = check_url("http://hooks.example.com/", field="url", policy=STRICT, resolver=resolver_to("2001:db8::5"))
    assert v6.pinned_url == "http://[2001:db8::5]:80/" and v6.host_header == "hooks.example.com"


def test_private_networks_follow_the_setting() -> None:
    url = "http://192.168.1.20:8080/hook"
    assert check_url(url, field="url", policy=STRICT).ip == "192.168.1.20"
    with pytest.raises(OutboundUrlError, match="private network"):
        check_url(url, field="url", policy=GuardPolicy(allow_private=False))


def test_camera_source_schemes() -> None:
    schemes = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt")
    assert check_url("rtsp://10.0.0.5/stream", field="source", policy=STRICT, schemes=schemes).port == 554
    with pytest.raises(OutboundUrlError, match="needs a port"):
        check_url("srt://10.0.0.5", field="source", policy=STRICT, schemes=schemes)
    with pytest.raises(OutboundUrlError, match="always refused"):
        check_url("rtsp://169.254.169.254:554/", field="source", policy=LOOPBACK_OK, schemes=schemes)


def test_policy_from_configuration_adds_the_clusters_ports() -> None:
    system = SystemConfig.model_validate({"api": {"port": 8111}, "cluster": {"dashboard_port": 8299}})
    policy = policy_from_config(outbound_config(allow_loopback=False), cluster_ports(system))
    assert {8111, 8299, 6380, 8265, 6379} <= policy.blocked_ports
    assert not policy.allow_loopback
    assert policy_from_config(outbound_config(blocked_ports=[]), {8111}).blocked_ports == frozenset()
