"""A private Dovecot IMAP server for the tests (Debian's dovecot-imapd): its own
configuration, port, users and maildirs in a temporary directory; mail is delivered with
APPEND. Run as root it drops to Dovecot's own users; otherwise it runs as the caller. It
offers STARTTLS with a self-signed certificate for 127.0.0.1 (`cert` is its file, for a
client to trust)."""

from __future__ import annotations

import getpass
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ports import free_port, wait_listening

_CONFIG = """
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{dir}/mail/%u
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def self_signed(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o644)  # read by Dovecot's master (root) before it drops privileges


class Dovecot:
    def __init__(self, directory: Path) -> None:
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is not installed: apt-get install dovecot-imapd")
        self.dir = directory
        self.port = free_port()
        self.users: dict[str, str] = {}

    def start(self) -> Dovecot:
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            internal, login, mail_user, mail_group = "dovecot", "dovenull", "nobody", "nogroup"
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir / "mail", nobody.pw_uid, nobody.pw_gid)
        else:
            me = getpass.getuser()
            internal = login = mail_user = me
            mail_group = str(os.getgid())
        (self.dir / "passwd").write_text("")
        self_signed(self.dir / "cert.pem", self.dir / "key.pem")
        self.cert = self.dir / "cert.pem"
        config = self.dir / "dovecot.conf"
        config.write_text(_CONFIG.format(dir=self.dir, port=self.port, internal=internal,
                                         login=login, mail_user=mail_user, mail_group=mail_group))  # fmt: skip
        subprocess.run(["dovecot", "-c", str(config)], check=True)
        wait_listening(self.port, "dovecot", self.log)
        return self

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def add_user(self, name: str, password: str) -> None:
        """A user with an empty INBOX, once Dovecot lets it in (it reads the password file
        again when the file's time changes, to the second)."""
        self.users[name] = password
        lines = "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items())
        path = self.dir / "passwd"
        path.write_text(lines)
        stamp = time.time() + 2
        os.utime(path, (stamp, stamp))
        deadline = time.monotonic() + 10
        while True:
            try:
                self.imap(name).logout()
                return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def imap(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            client.login(user, self.users[user])
        except BaseException:
            client.shutdown()
            raise
        return client

    def deliver(self, user: str, raw: bytes) -> int:
        """APPEND a message to the user's INBOX; its UID."""
        client = self.imap(user)
        try:
            typ, data = client.append("INBOX", None, None, raw)
            assert typ == "OK", data
            text = data[0].decode() if data and data[0] else ""
            return (
                int(text.split("APPENDUID ")[1].split()[1].rstrip("]"))
                if "APPENDUID" in text
                else 0
            )
        finally:
            client.logout()

    def count(self, user: str) -> int:
        client = self.imap(user)
        try:
            typ, data = client.select("INBOX", readonly=True)
            return int(data[0]) if typ == "OK" and data[0] else 0
        finally:
            client.logout()

    def stop(self) -> None:
        pid_file = self.dir / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
