"""Pre-flight through `python -m ops sender check`, against a private DNS server (dnsmasq)
with a good domain and broken ones: SPF without the relay, a DKIM record that is not the
key, no DMARC, no MX, an EHLO name whose address points back elsewhere. Each broken zone is
named in its own line; the good domain passes. The provider lookup reads the same server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from core import dkim
from core.providers import Provider
from ops import dkim as ops_dkim
from tests.dns_server import DnsServer, Zone
from tests.processes import ROOT
from worker.providers import Lookup

RELAY, OUT = "192.0.2.10", "192.0.2.20"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    for domain in ("good.com", "nodmarc.com", "nomx.com", "wrongkey.com", "nospf.com"):
        ops_dkim.create(directory, domain, "s1")
    return directory


@pytest.fixture
def dns_server(tmp_path: Path, keys: Path) -> Iterator[DnsServer]:
    loaded = dkim.load_keys(keys)
    other = dkim.load_keys(_other_key(tmp_path))["wrongkey.com"]

    def record(domain: str) -> dict[str, list[str]]:
        return {f"s1._domainkey.{domain}": [loaded[domain].dns_record()]}

    zone = Zone(
        txt={
            "good.com": ["v=spf1 include:_spf.relay.net -all"],
            "_spf.relay.net": ["v=spf1 ip4:192.0.2.0/28 ~all"],
            "_dmarc.good.com": ["v=DMARC1; p=quarantine"],
            **record("good.com"),
            "nospf.com": ["google-site-verification=abc"],
            "_dmarc.nospf.com": ["v=DMARC1; p=none"],
            **record("nospf.com"),
            "badspf.com": ["v=spf1 ip4:198.51.100.7 mx -all"],
            "nodmarc.com": [f"v=spf1 ip4:{RELAY} -all"],
            **record("nodmarc.com"),
            "nomx.com": ["v=spf1 a:relay.good.com -all"],
            "_dmarc.nomx.com": ["v=DMARC1; p=reject"],
            **record("nomx.com"),
            "wrongkey.com": [f"v=spf1 ip4:{RELAY} -all"],
            "_dmarc.wrongkey.com": ["v=DMARC1; p=none"],
            "s1._domainkey.wrongkey.com": [other.dns_record()],
            "mailer.net": ["v=spf1 -all"],
        },
        mx={d: ["mx.good.com"] for d in ("good.com", "nospf.com", "badspf.com", "nodmarc.com",
                                          "wrongkey.com")}
        | {"acme-corp.com": ["aspmx.l.google.com"], "bigco.com": ["bigco-com.mail.protection.outlook.com"]},
        a={"relay.good.com": RELAY, "out.good.com": OUT, "mx.good.com": "192.0.2.30",
           "out.elsewhere.com": "192.0.2.40"},
        ptr={OUT: "out.good.com", "192.0.2.40": "host-40.isp.example"},
    )  # fmt: skip
    server = DnsServer(zone, tmp_path)
    yield server
    server.stop()


def _other_key(tmp_path: Path) -> Path:
    directory = tmp_path / "other"
    ops_dkim.create(directory, "wrongkey.com", "s1")
    return directory


def _check(
    database: str, server: DnsServer, keys: Path, email: str, ehlo: str
) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-m", "ops", "sender", "check", email, "--json"], cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database, "DNS_NAMESERVERS":
             server.nameservers, "SMTP_HOST": "relay.good.com", "SMTP_LOCAL_HOSTNAME": ehlo,
             "DKIM_KEYS_DIR": str(keys)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.startswith("["), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_each_broken_zone_is_named_and_the_good_one_passes(
    pool: asyncpg.Pool, database: str, dns_server: DnsServer, keys: Path
) -> None:
    domains = ("good.com", "nospf.com", "badspf.com", "nodmarc.com", "nomx.com", "wrongkey.com")
    await pool.executemany(
        "INSERT INTO senders (email) VALUES ($1)", [(f"ana@{d}",) for d in domains]
    )
    code, good = _check(database, dns_server, keys, "ana@good.com", "out.good.com")
    assert code == 0, good
    assert all(f["ok"] for f in good)
    assert [f["check"] for f in good] == ["spf", "dkim", "dmarc", "mx", "ehlo"]

    def failing(email: str, ehlo: str = "out.good.com") -> dict[str, str]:
        code, found = _check(database, dns_server, keys, email, ehlo)
        assert code == 1, found
        return {str(f["check"]): str(f["message"]) for f in found if not f["ok"]}

    assert failing("ana@nospf.com") == {
        "spf": f"nospf.com has no SPF record: publish a TXT record `v=spf1 ip4:{RELAY} -all`"
        " (or your provider's include:)"
    }
    bad = failing("ana@badspf.com")
    assert bad["spf"].startswith(f"badspf.com's SPF does not allow relay.good.com ({RELAY})")
    assert bad["dkim"].startswith("no DKIM key for badspf.com")
    assert set(failing("ana@nodmarc.com")) == {"dmarc"}
    assert failing("ana@nomx.com") == {
        "mx": "nomx.com has no MX: replies and bounces cannot come back; publish the MX of its"
        " mailboxes"
    }
    assert failing("ana@wrongkey.com")["dkim"].startswith(
        "the DKIM record at s1._domainkey.wrongkey.com is not the key in DKIM_KEYS_DIR"
    )
    ehlo = failing("ana@good.com", ehlo="out.elsewhere.com")
    assert ehlo == {
        "ehlo": "out.elsewhere.com is 192.0.2.40, but 192.0.2.40's PTR says"
        " host-40.isp.example: ask the host's provider to set the PTR of 192.0.2.40 to"
        " out.elsewhere.com"
    }
    assert set(failing("ana@good.com", ehlo="nowhere.good.com")) == {"ehlo"}


async def test_a_recipient_domain_s_provider_comes_from_its_mx(dns_server: DnsServer) -> None:
    lookup = Lookup(dns_server.nameservers)
    assert await lookup.provider("acme-corp.com") is Provider.GOOGLE
    assert await lookup.provider("bigco.com") is Provider.MICROSOFT
    assert await lookup.provider("good.com") is Provider.OTHER
    assert await lookup.provider("unknown-to-it.com") is Provider.OTHER  # refused: other
    assert await lookup.provider("gmail.com") is Provider.GOOGLE  # the table, no lookup
