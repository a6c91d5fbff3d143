"""Which provider a recipient's domain belongs to, for the worker: the table of well-known
domains, else its MX hosts looked up with dnspython (DNS_NAMESERVERS, or the host's own
resolver), each answer kept a day (a failed lookup five minutes, as OTHER)."""

from __future__ import annotations

import time

import dns.exception
import dns.resolver
import structlog

from core import providers
from core.providers import Provider
from runtime.dns import resolver

log = structlog.get_logger()

KEEP_SECONDS = 86400.0
KEEP_FAILED_SECONDS = 300.0


class Lookup:
    def __init__(self, nameservers: str | None) -> None:
        self.resolver = resolver(nameservers)
        self.cache: dict[str, tuple[Provider, float]] = {}

    async def provider(self, domain: str) -> Provider:
        domain = domain.lower().rstrip(".")
        if (known := providers.known(domain)) is not None:
            return known
        hit = self.cache.get(domain)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        try:
            answer = await self.resolver.resolve(domain, "MX")
            found = providers.from_mx(str(r.exchange) for r in answer)
            keep = KEEP_SECONDS
        except (dns.exception.DNSException, OSError) as exc:
            found, keep = Provider.OTHER, KEEP_FAILED_SECONDS
            log.info("mx_lookup_failed", domain=domain, error=str(exc)[:200])
        if len(self.cache) > 100_000:
            self.cache.clear()
        self.cache[domain] = (found, time.monotonic() + keep)
        return found
