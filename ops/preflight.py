"""Pre-flight of a sender (`ops sender check EMAIL`, the console's senders page): what the
world's DNS says about its domain and its sending host, each finding one line saying what
to fix. SPF (does it allow the host the sender's mail leaves from: its own SMTP account, or
the relay), the DKIM record against the key in DKIM_KEYS_DIR, DMARC, MX, and the EHLO
name's address and the way back (PTR)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.reversename

from core import dkim

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
SPF_LOOKUPS = 10  # RFC 7208's limit of DNS-querying terms


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # spf, dkim, dmarc, mx, ehlo
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'FIX'} {self.check:<5} {self.message}"


@dataclass(frozen=True, slots=True)
class Sender:
    """What the checks need to know of the sender and where its mail leaves from."""

    email: str
    sending_host: str  # its SMTP account's host, or SMTP_HOST
    ehlo_name: str  # SMTP_LOCAL_HOSTNAME, or this host's name
    dkim_keys_dir: Path | None


class _Dns:
    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.r = resolver
        self.lookups = 0

    async def texts(self, name: str) -> list[str]:
        try:
            answer = await self.r.resolve(name, "TXT")
        except (dns.exception.DNSException, OSError):
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    async def addresses(self, name: str) -> set[IP]:
        found: set[IP] = set()
        for kind in ("A", "AAAA"):
            try:
                answer = await self.r.resolve(name, kind)
            except (dns.exception.DNSException, OSError):
                continue
            found |= {ipaddress.ip_address(r.to_text()) for r in answer}
        return found

    async def mx(self, name: str) -> list[str]:
        try:
            answer = await self.r.resolve(name, "MX")
        except (dns.exception.DNSException, OSError):
            return []
        return [str(r.exchange).rstrip(".") for r in answer]

    async def ptr(self, ip: IP) -> list[str]:
        try:
            answer = await self.r.resolve(dns.reversename.from_address(str(ip)), "PTR")
        except (dns.exception.DNSException, OSError):
            return []
        return [r.to_text().rstrip(".").lower() for r in answer]


async def _spf_allows(d: _Dns, domain: str, ips: set[IP], depth: int = 0) -> bool | None:
    """Whether `domain`'s SPF record passes mail from any of `ips` (None: no record, or it
    says neither): ip4/ip6, a, mx, include, redirect and all, as RFC 7208 has them."""
    records = [t for t in await d.texts(domain) if t.lower().startswith("v=spf1")]
    if len(records) != 1 or depth > SPF_LOOKUPS:
        return None
    redirect = None
    for written in records[0].split()[1:]:
        qualifier, term = "+", written
        if term[0] in "+-~?":
            qualifier, term = term[0], term[1:]
        mech, _, arg = term.partition(":")
        mech = mech.lower()
        if mech.startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        hit: bool | None = False
        if mech in ("ip4", "ip6"):
            try:
                net = ipaddress.ip_network(arg, strict=False)
            except ValueError:
                continue
            hit = any(ip.version == net.version and ip in net for ip in ips)
        elif mech in ("a", "a/24") or mech.startswith("a/"):
            hit = bool(ips & await d.addresses(arg or domain))
        elif mech == "mx" or mech.startswith("mx/"):
            for host in await d.mx(arg or domain):
                if ips & await d.addresses(host):
                    hit = True
                    break
        elif mech == "include":
            hit = await _spf_allows(d, arg, ips, depth + 1) is True
        elif mech == "all":
            hit = True
        if hit:
            return qualifier == "+"
    if redirect:
        return await _spf_allows(d, redirect, ips, depth + 1)
    return None


async def check(resolver: dns.asyncresolver.Resolver, sender: Sender) -> list[Finding]:
    """Every finding about `sender`, in a fixed order."""
    d = _Dns(resolver)
    domain = sender.email.rpartition("@")[2].lower()
    out: list[Finding] = []

    # SPF: the sending host's addresses must pass.
    host = sender.sending_host
    try:
        ips: set[IP] = {ipaddress.ip_address(host)}
    except ValueError:
        ips = await d.addresses(host)
    has_spf = any(t.lower().startswith("v=spf1") for t in await d.texts(domain))
    shown = ", ".join(sorted(map(str, ips))) or "no address"
    if not has_spf:
        out.append(
            Finding(
                "spf",
                False,
                f"{domain} has no SPF record: publish a TXT record"
                f" `v=spf1 ip4:{next(iter(sorted(map(str, ips))), 'ADDRESS')} -all`"
                " (or your provider's include:)",
            )
        )
    elif not ips:
        out.append(Finding("spf", False, f"the sending host {host} has no address in DNS"))
    elif await _spf_allows(d, domain, ips):
        out.append(Finding("spf", True, f"{domain}'s SPF allows {host} ({shown})"))
    else:
        out.append(
            Finding(
                "spf",
                False,
                f"{domain}'s SPF does not allow {host} ({shown}): add"
                f" `ip4:{shown.split(', ')[0]}` or your provider's include: to it",
            )
        )

    # DKIM: the record published for the key that signs.
    keys = dkim.load_keys(sender.dkim_keys_dir) if sender.dkim_keys_dir else {}
    key = keys.get(domain)
    if key is None:
        out.append(
            Finding(
                "dkim",
                False,
                f"no DKIM key for {domain}: `python -m ops dkim create"
                f" {domain} s1` and publish the record it prints",
            )
        )
    else:
        name = f"{key.selector}._domainkey.{domain}"
        published = [t for t in await d.texts(name) if "p=" in t]
        want = _p(key.dns_record())
        if not published:
            out.append(
                Finding("dkim", False, f"no DKIM record at {name}: publish `{key.dns_record()}`")
            )
        elif want not in {_p(t) for t in published}:
            out.append(
                Finding(
                    "dkim",
                    False,
                    f"the DKIM record at {name} is not the key in"
                    f" DKIM_KEYS_DIR: publish `{key.dns_record()}`",
                )
            )
        else:
            out.append(Finding("dkim", True, f"{name} matches the signing key"))

    # DMARC.
    dmarc = [t for t in await d.texts(f"_dmarc.{domain}") if t.upper().startswith("V=DMARC1")]
    if not dmarc:
        out.append(
            Finding(
                "dmarc",
                False,
                f"no DMARC record at _dmarc.{domain}: publish"
                " `v=DMARC1; p=none; rua=mailto:dmarc@" + domain + "` to start",
            )
        )
    else:
        out.append(Finding("dmarc", True, f"_dmarc.{domain}: {dmarc[0][:120]}"))

    # MX: replies and bounces must reach the sender's domain.
    mx = await d.mx(domain)
    if not mx:
        out.append(
            Finding(
                "mx",
                False,
                f"{domain} has no MX: replies and bounces cannot come"
                " back; publish the MX of its mailboxes",
            )
        )
    else:
        out.append(Finding("mx", True, f"{domain} receives at {', '.join(sorted(mx)[:3])}"))

    # EHLO name: an address, and the way back to the same name.
    ehlo = sender.ehlo_name.lower().rstrip(".")
    addrs = await d.addresses(ehlo)
    if not addrs:
        out.append(
            Finding(
                "ehlo",
                False,
                f"the EHLO name {ehlo} has no address: set"
                " SMTP_LOCAL_HOSTNAME to the sending host's public name",
            )
        )
    else:
        ip = sorted(addrs, key=str)[0]
        names = await d.ptr(ip)
        if ehlo in names:
            out.append(Finding("ehlo", True, f"{ehlo} is {ip}, and {ip} is {ehlo} (PTR)"))
        else:
            back = ", ".join(names) or "nothing"
            out.append(
                Finding(
                    "ehlo",
                    False,
                    f"{ehlo} is {ip}, but {ip}'s PTR says {back}:"
                    f" ask the host's provider to set the PTR of {ip} to {ehlo}",
                )
            )
    return out


def _p(record: str) -> str:
    """The public key (p=) of a DKIM record, without spaces."""
    for tag in record.replace(" ", "").split(";"):
        if tag.startswith("p="):
            return tag[2:]
    return ""


def default_ehlo() -> str:
    return socket.getfqdn()
