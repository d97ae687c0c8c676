"""Which webhook URLs Sluice may call: SSRF protection for the sink, and the same check at submit.

A webhook URL comes from whoever submits a job, so by default the sink refuses any URL whose host
is, or resolves to, an address that is not on the public internet: loopback, private (RFC 1918,
unique-local fc00::/7), carrier-grade NAT (100.64/10), link-local (incl. cloud metadata at
169.254.169.254 and fd00:ec2::254), multicast, unspecified, reserved, documentation and benchmark
ranges, and the same addresses wrapped in IPv6 (IPv4-mapped, IPv4-compatible, 6to4, Teredo,
NAT64). http:// is refused unless allowed. An explicit allowlist (host names or CIDR ranges)
lets internal endpoints through.

The sink checks the address it actually connects to (its resolver refuses forbidden answers), so
a name that resolves to a public address at submit time and to 127.0.0.1 later (DNS rebinding)
is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sluice.errors import PermanentError

__all__ = ["ForbiddenUrlError", "UrlPolicy", "forbidden_reason"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not caught by the range checks on every cloud.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack (link-local anyway)
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (inside 100.64/10)
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6 (unique-local anyway)
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA_NAMES = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


class ForbiddenUrlError(PermanentError):
    """A webhook URL the policy does not allow (scheme, address class, or unresolvable host)."""

    code = "forbidden_webhook_url"


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` may not be called, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return f"{reason} (embedded in {address})" if reason else None
    if address in _METADATA:
        return "a cloud metadata address"
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "the unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute):
            return reason
    if not address.is_global:  # e.g. 100.64/10 (shared), 192.0.0/24, benchmark ranges
        return "not a globally routable address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed)
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """allow_http: accept http:// URLs; allowlist: host names or CIDR ranges always allowed."""

    allow_http: bool = False
    allowlist: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False, repr=False)
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, repr=False)
    # check_url's answer per URL: the sink checks every delivery, and a few URLs recur millions of times.
    _verdicts: dict[str, tuple[str, int] | ForbiddenUrlError] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        hosts, networks = set(), []
        for entry in self.allowlist:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_verdicts", {})

    def host_allowlisted(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def address_reason(self, address: IPAddress) -> str | None:
        """Why connecting to `address` is refused, or None when it is allowed."""
        if any(address in net for net in self._networks):
            return None
        return forbidden_reason(address)

    def check_url(self, url: str) -> tuple[str, int]:
        """Check what can be checked without DNS; returns (host, port). Raises ForbiddenUrlError."""
        verdict = self._verdicts.get(url)
        if verdict is None:
            try:
                verdict = self._check_url(url)
            except ForbiddenUrlError as exc:
                verdict = exc
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[url] = verdict
        if isinstance(verdict, ForbiddenUrlError):
            raise ForbiddenUrlError(str(verdict))
        return verdict

    def _check_url(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ForbiddenUrlError(f"webhook URL {url!r} is not a valid URL: {exc}") from None
        scheme, host = parts.scheme.lower(), (parts.hostname or "")
        if scheme not in ("https", "http"):
            raise ForbiddenUrlError(f"webhook URL {url!r}: scheme must be https, got {scheme or 'none'!r}")
        if scheme == "http" and not self.allow_http and not self.host_allowlisted(host):
            raise ForbiddenUrlError(
                f"webhook URL {url!r}: http:// is not allowed (use https, or set SLUICE_WEBHOOK_ALLOW_HTTP)"
            )
        if not host:
            raise ForbiddenUrlError(f"webhook URL {url!r} has no host")
        if parts.username or parts.password:
            raise ForbiddenUrlError(f"webhook URL {url!r}: credentials in the URL are not allowed")
        if host.lower().rstrip(".") in _METADATA_NAMES and not self.host_allowlisted(host):
            raise ForbiddenUrlError(f"webhook URL {url!r}: {host} is a cloud metadata service")
        literal = _ip_literal(host)
        if literal is not None and not self.host_allowlisted(host):
            self._refuse_address(url, literal)
        return host, port or (443 if scheme == "https" else 80)

    def check_addresses(self, url: str, host: str, addresses: Iterable[str]) -> None:
        """Refuse if any address `host` resolved to is forbidden (all, not just the first: a client
        may fall back to the next one)."""
        if self.host_allowlisted(host):
            return
        for text in addresses:
            self._refuse_address(url, ipaddress.ip_address(text.split("%", 1)[0]))

    def check_resolved(self, url: str) -> None:
        """check_url, then resolve the host and check every address (used at submit time)."""
        host, port = self.check_url(url)
        if _ip_literal(host) is not None or self.host_allowlisted(host):
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ForbiddenUrlError(f"webhook URL {url!r}: host {host!r} does not resolve ({exc})") from None
        self.check_addresses(url, host, [str(info[4][0]) for info in infos])

    def _refuse_address(self, url: str, address: IPAddress) -> None:
        reason = self.address_reason(address)
        if reason is not None:
            raise ForbiddenUrlError(
                f"webhook URL {url!r} points at {address}, {reason}; "
                "add it to SLUICE_WEBHOOK_ALLOWLIST if this internal endpoint is intended"
            )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return _legacy_ipv4(host)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Forms inet_aton accepts and URL parsers pass through: 2130706433, 0x7f.1, 017700000001."""
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
