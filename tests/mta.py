"""A private postfix (Debian's package) for the tests: its own configuration, queue and log
in a temporary directory, listening on a free port on loopback and relaying everything to
one SMTP server of the test's. What it delivers onward is what a real MTA made of a message
(its own Received header, queue handling, line and header rewriting). Given a mailbox, it
also delivers mail for one domain into a Maildir (e.g. a Dovecot user's), as a sender's own
mail server does with the bounces it writes to that sender."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.ports import free_port, wait_listening

_MAIN = """
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.example.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
"""

_MAILBOX = """
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {base}
virtual_mailbox_maps = static:{name}/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
"""


class Postfix:
    def __init__(
        self, directory: Path, relay_port: int, mailbox: tuple[str, Path] | None = None
    ) -> None:
        """`mailbox` (domain, Maildir): mail for that domain is delivered into that
        Maildir (as its owner), everything else relayed to `relay_port`."""
        if shutil.which("postfix") is None:
            raise RuntimeError("postfix is not installed: apt-get install postfix")
        self.dir = directory
        self.port = free_port()
        self.relay_port = relay_port
        self.mailbox = mailbox

    def start(self) -> Postfix:
        self.dir.chmod(0o755)  # postfix's own user reads its data directory below it
        (self.dir / "queue").mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        shutil.chown(self.dir / "data", "postfix")
        main = _MAIN.format(dir=self.dir, relay_port=self.relay_port)
        if self.mailbox is not None:
            domain, maildir = self.mailbox
            owner = maildir.parent.stat()
            main += _MAILBOX.format(domain=domain, base=maildir.parent, name=maildir.name,
                                    uid=owner.st_uid, gid=owner.st_gid)  # fmt: skip
        (self.dir / "main.cf").write_text(main)
        master = (
            Path("/etc/postfix/master.cf")
            .read_text()
            .replace(
                "smtp      inet  n       -       y       -       -       smtpd",
                f"127.0.0.1:{self.port} inet n - n - - smtpd",
            )
        )
        if "postlogd" not in master:
            master += "postlog   unix-dgram n  -       n       -       1       postlogd\n"
        (self.dir / "master.cf").write_text(master)
        subprocess.run(["postfix", "-c", str(self.dir), "start"], check=True, capture_output=True)
        wait_listening(self.port, "postfix", self.log)
        return self

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.dir), "stop"], check=False, capture_output=True)
