"""Operations files: compose files valid against the Compose spec, Dockerfile entry points real,
migrations idempotent and safe to run concurrently."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import yaml

from db.migrate import discover, function_files, migrate
from tests.integration.helpers import fresh_and_older

ROOT = Path(__file__).resolve().parents[2]
DAEMONS = {"scheduler", "pump", "worker", "inbox", "webhooks"}


@pytest.mark.parametrize("name", ["compose.yaml", "compose.prod.yaml"])
def test_compose_file_is_valid(name: str) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / name),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _commands(name: str) -> dict[str, list[str]]:
    doc = yaml.safe_load((ROOT / name).read_text())
    return {svc: spec["command"] for svc, spec in doc["services"].items() if "command" in spec}


def test_compose_runs_every_daemon_and_real_modules() -> None:
    dev, prod = _commands("compose.yaml"), _commands("compose.prod.yaml")
    # The demo's OpenID provider shares the API's network: one address for browser and API.
    oidc = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["oidc"]
    assert oidc["network_mode"] == "service:api"
    assert "node provider.mjs" in dev.pop("oidc")[-1]
    assert dev.keys() >= DAEMONS
    assert prod.keys() >= DAEMONS
    assert "seed" in dev
    assert "seed" not in prod
    for cmd in [*dev.values(), *prod.values()]:
        assert cmd[:2] == ["python", "-m"]
        assert (ROOT / cmd[2] / "__main__.py").is_file(), cmd
    dev_doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert {"postgres", "rabbitmq", "mailpit", "migrate"} <= dev_doc["services"].keys()
    prod_doc = yaml.safe_load((ROOT / "compose.prod.yaml").read_text())
    assert prod_doc["services"]["worker"]["deploy"]["replicas"] >= 2
    assert set(prod_doc["secrets"]) >= {"database_url", "amqp_url", "smtp_password"}


def test_prod_services_get_only_their_secrets_limits_and_a_progress_health_check() -> None:
    doc = yaml.safe_load((ROOT / "compose.prod.yaml").read_text())
    services = doc["services"]
    uses = {
        "migrate": {"database_url"},
        "scheduler": {"database_url", "unsubscribe_secret", "message_id_secret"},
        "pump": {"database_url", "amqp_url"},
        "worker": {"database_url", "amqp_url", "smtp_password", "credentials_key"},
        "inbox": {"database_url", "credentials_key", "bounce_imap_password"},
        "webhooks": {"database_url"},
        "api": {
            "database_url",
            "amqp_url",
            "unsubscribe_secret",
            "session_secret",
            "oidc_client_secret",
            "credentials_key",
        },
    }
    for name, secrets in uses.items():
        assert set(services[name]["secrets"]) == secrets, name
    for name, spec in services.items():
        assert spec["deploy"]["resources"]["limits"]["memory"], name
    assert services["migrate"]["restart"] == "on-failure:5"
    for name in DAEMONS | {"api"}:
        for doc_ in (doc, yaml.safe_load((ROOT / "compose.yaml").read_text())):
            assert doc_["services"][name]["healthcheck"]["test"] == [
                "CMD", "python", "-m", "ops", "health", "--service", name,
            ]  # fmt: skip
        # The health files go to a tmpfs: the root file system is read-only.
        assert services[name]["read_only"] is True
        assert "/tmp" in services[name]["tmpfs"]
        assert services[name]["environment"]["HEALTH_DIR"].startswith("/tmp/")


def test_dockerfile_is_multistage_nonroot_and_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2
    # Pinned bases (a minor tag moves under you); a numeric user, which Kubernetes'
    # runAsNonRoot can check.
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases), bases
    assert re.search(r"^USER \d+:\d+$", text, re.MULTILINE)
    copied = set(re.findall(r"^COPY (\w+) ", text, re.MULTILINE))
    for pkg in DAEMONS | {"core", "runtime", "db", "broker", "migrations", "ops", "api"}:
        assert pkg in copied
        assert (ROOT / pkg).is_dir()
    cmd = re.search(r'^CMD \["python", "-m", "(\w+)"\]', text, re.MULTILINE)
    assert cmd is not None
    assert (ROOT / cmd.group(1) / "__main__.py").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()


async def test_migrate_twice_and_concurrently_is_a_no_op(database: str) -> None:
    # `database` is already migrated (cloned from the template): nothing left to apply.
    first, second = await asyncio.gather(migrate(database), migrate(database))
    assert (first, second) == ([], [])
    conn = await asyncpg.connect(database)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert versions == [m.version for m in discover()]


async def test_concurrent_migrations_on_an_empty_database(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    a, b = await asyncio.gather(migrate(database), migrate(database))
    assert sorted([a, b], key=len) == [[], [m.version for m in discover()]]


def _schema(url: str) -> str:
    """The schema and every function's definition, as pg_dump writes them."""
    proc = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    skip = ("--", "\\restrict", "\\unrestrict")  # comments, and a random key per dump
    return "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith(skip))


async def test_an_upgraded_database_is_the_same_as_a_fresh_one(tmp_path: Path) -> None:
    """Migrated up to the release before functions moved out of migrations (0004), then to
    now, a database has exactly the schema and function definitions of a fresh one."""
    async with fresh_and_older(tmp_path, 5, tmp_path / "none") as (fresh, upgraded):
        conn = await asyncpg.connect(upgraded)
        try:  # some data the upgrade has to carry
            await conn.execute("""INSERT INTO senders (email) VALUES ('s@acme.test');
                INSERT INTO sequences (name) VALUES ('S')""")
        finally:
            await conn.close()
        await migrate(upgraded)
        assert _schema(upgraded) == _schema(fresh)


def _compose_config(
    name: str, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` (Debian's Compose client; no engine is needed to resolve a
    file) of one of our files. That client predates the top-level `name:`, so the file is
    given without it and the name as COMPOSE_PROJECT_NAME (the schema check covers `name`)."""
    text = (ROOT / name).read_text()
    (project_name,) = re.findall(r"(?m)^name: (\S+)$", text)
    copy = tmp_path / name
    copy.write_text(re.sub(r"(?m)^name: .*$", "", text))
    return subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", str(copy), "config"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COMPOSE_PROJECT_NAME": project_name, **env},
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="make system-deps installs it")
def test_a_compose_client_resolves_both_files(tmp_path: Path) -> None:
    dev = _compose_config("compose.yaml", tmp_path, {})
    assert dev.returncode == 0, dev.stderr
    resolved = yaml.safe_load(dev.stdout)
    # The development services publish on this host only.
    for svc in ("postgres", "rabbitmq"):
        ports = resolved["services"][svc]["ports"]
        assert ports
        for port in ports:
            bound = port.split(":")[0] if isinstance(port, str) else port.get("host_ip")
            assert bound == "127.0.0.1", (svc, port)
    assert resolved["services"]["api"]["build"]["context"] == str(ROOT)
    # Production: what must be set is named, and with it the file resolves.
    unset = _compose_config("compose.prod.yaml", tmp_path, {})
    assert unset.returncode != 0
    assert "set SMTP_HOST" in unset.stderr
    prod = _compose_config("compose.prod.yaml", tmp_path, {"SMTP_HOST": "relay.acme.test"})
    assert prod.returncode == 0, prod.stderr
    services = yaml.safe_load(prod.stdout)["services"]
    assert services["worker"]["environment"]["SMTP_HOST"] == "relay.acme.test"
    assert {s["source"] for s in services["api"]["secrets"]} >= {"credentials_key"}
    assert services["api"]["image"].startswith("email-scheduler:")
    assert services["api"]["build"]["context"] == str(ROOT)


def test_each_function_body_lives_in_one_place() -> None:
    """A function of db/functions/ is never also written out in a migration (a migration
    whose trigger needs one names its file in `-- functions: FILE`)."""
    defined = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\s*\(", re.IGNORECASE)
    in_files = {name: file for file, sql in function_files() for name in defined.findall(sql)}
    assert {"record_finished", "claim_sends", "stop_leads", "count_events"} <= in_files.keys()
    for mig in discover():
        twice = set(defined.findall(mig.sql)) & in_files.keys()
        assert not twice, f"{mig.version:04d}_{mig.name}: {twice} live in db/functions"
        for needed in re.findall(r"(?m)^-- functions: (\S+)$", mig.sql):
            assert needed in set(in_files.values()), (mig.name, needed)
