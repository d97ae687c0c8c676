"""SSRF protection: every forbidden address class refused, at submit (check_resolved) and at
connection time (GuardedResolver), in IPv4 and IPv6 and the IPv6 forms that wrap IPv4."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from results_sink.http import GuardedResolver
from sluice.urlpolicy import ForbiddenUrlError, UrlPolicy

POLICY = UrlPolicy()

FORBIDDEN = {
    "loopback v4": "127.0.0.1",
    "loopback v4 other": "127.8.9.10",
    "loopback v6": "[::1]",
    "private 10/8": "10.1.2.3",
    "private 172.16/12": "172.20.0.1",
    "private 192.168/16": "192.168.1.1",
    "unique-local v6": "[fd12:3456::1]",
    "carrier-grade NAT": "100.64.0.1",
    "link-local v4": "169.254.1.1",
    "link-local v6": "[fe80::1]",
    "cloud metadata v4": "169.254.169.254",
    "cloud metadata alibaba": "100.100.100.200",
    "cloud metadata aws v6": "[fd00:ec2::254]",
    "multicast v4": "224.0.0.1",
    "multicast v6": "[ff02::1]",
    "unspecified v4": "0.0.0.0",
    "unspecified v6": "[::]",
    "reserved 240/4": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "documentation": "192.0.2.1",
    "ipv4-mapped v6 loopback": "[::ffff:127.0.0.1]",
    "ipv4-mapped v6 metadata": "[::ffff:169.254.169.254]",
    "ipv4-mapped v6 private hex": "[::ffff:a00:1]",
    "ipv4-compatible v6": "[::127.0.0.1]",
    "6to4 wrapping private": "[2002:c0a8:0101::1]",
    "nat64 wrapping loopback": "[64:ff9b::7f00:1]",
    "decimal v4 loopback": "2130706433",
    "hex v4 loopback": "0x7f000001",
}


@pytest.mark.parametrize("host", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_each_forbidden_address_class_is_refused(host: str) -> None:
    with pytest.raises(ForbiddenUrlError, match="points at"):
        POLICY.check_url(f"https://{host}/hook")


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "hooks.example.com"]
)
def test_public_addresses_and_names_pass_the_static_check(host: str) -> None:
    POLICY.check_url(f"https://{host}/hook")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/h", "http:// is not allowed"),
        ("ftp://hooks.example.com/h", "scheme must be https"),
        ("https:///nohost", "has no host"),
        ("https://user:pw@hooks.example.com/h", "credentials"),
        ("https://metadata.google.internal/x", "cloud metadata"),
        ("https://hooks.example.com:99999/h", "not a valid URL"),
    ],
)
def test_bad_urls_get_a_clear_reason(url: str, words: str) -> None:
    with pytest.raises(ForbiddenUrlError, match=words):
        POLICY.check_url(url)


def test_allowlist_of_hosts_and_ranges_and_http_opt_in() -> None:
    policy = UrlPolicy(allow_http=True, allowlist=("10.0.0.0/8", "hooks.internal"))
    policy.check_url("http://10.2.3.4:8080/h")
    policy.check_url("https://hooks.internal/h")
    policy.check_addresses("https://hooks.internal/h", "hooks.internal", ["127.0.0.1"])
    with pytest.raises(ForbiddenUrlError):
        policy.check_url("http://192.168.0.1/h")


def test_submit_time_check_resolves_names() -> None:
    with pytest.raises(ForbiddenUrlError, match="loopback"):
        POLICY.check_resolved("https://localhost/hook")
    with pytest.raises(ForbiddenUrlError, match="does not resolve"):
        POLICY.check_resolved("https://no-such-host.invalid/hook")


class _Rebinding:
    """Fake inner resolver: a name that answered publicly at submit now answers 127.0.0.1."""

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": "93.184.216.34",
                "port": port,
                "family": family,
                "proto": 0,
                "flags": 0,
            },
            {"hostname": host, "host": "127.0.0.1", "port": port, "family": family, "proto": 0, "flags": 0},
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_a_forbidden_answer_at_connection_time() -> None:
    resolver = GuardedResolver(POLICY)
    resolver._inner = _Rebinding()  # type: ignore[assignment]
    with pytest.raises(ForbiddenUrlError, match=r"127\.0\.0\.1"):
        await resolver.resolve("rebind.example.com", 443)


async def test_poster_reports_forbidden_connections_as_permanent() -> None:
    from results_sink.http import AiohttpPoster

    poster = AiohttpPoster(UrlPolicy(allow_http=True), timeout_s=2, per_host=1)
    try:
        outcome = await poster.post("http://localhost:9/h", b"{}", {})
    finally:
        await poster.close()
    assert outcome.forbidden and outcome.status is None and "loopback" in (outcome.error or "")


def test_submit_refuses_a_forbidden_webhook_before_anything_is_sent() -> None:
    from producer import JobProducer
    from sluice.settings import ProducerSettings

    job = {"model": "m", "prompt": "hi", "webhook_url": "https://10.0.0.7/hook"}
    producer = JobProducer(ProducerSettings(bootstrap_servers="127.0.0.1:1"))
    try:
        with pytest.raises(ForbiddenUrlError, match=r"10\.0\.0\.7, a private address"):
            producer.submit(job)
        with pytest.raises(ForbiddenUrlError, match="http:// is not allowed"):
            producer.submit({**job, "webhook_url": "http://hooks.example.com/h"})
        assert producer.flush(0) == 0  # nothing was queued for Kafka
    finally:
        producer.close(timeout=1)
    allowed = JobProducer(ProducerSettings(bootstrap_servers="127.0.0.1:1", webhook_allowlist=["10.0.0.0/8"]))
    try:
        allowed.check_webhook_url("https://10.0.0.7/hook")  # no error: allowlisted
    finally:
        allowed.close(timeout=1)


def test_cli_submit_exits_2_with_the_reason() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice.cli",
            "submit",
            "--model",
            "m",
            "--prompt",
            "hi",
            "--webhook-url",
            "https://[::1]/h",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "forbidden_webhook_url" in out.stderr and "loopback" in out.stderr
