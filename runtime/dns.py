"""DNS lookups (dnspython): a resolver of DNS_NAMESERVERS, or of the host's own settings."""

from __future__ import annotations

import dns.asyncresolver


def resolver(nameservers: str | None, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
    """A resolver of `nameservers` ("127.0.0.1:5353,…"; one port for all), or the host's."""
    if not nameservers:
        r = dns.asyncresolver.Resolver()
    else:
        r = dns.asyncresolver.Resolver(configure=False)
        hosts = [n.strip() for n in nameservers.split(",") if n.strip()]
        r.nameservers = [h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in hosts]
        ports = {int(h.rsplit(":", 1)[1]) for h in hosts if h.count(":") == 1}
        if ports:
            r.port = ports.pop()
    r.lifetime = timeout
    return r
