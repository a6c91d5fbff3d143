"""A private DNS server for tests: Debian's dnsmasq on a free UDP port of 127.0.0.1,
answering only the records it is given (TXT, MX, A, PTR) and refusing every other name."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Zone:
    txt: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, list[str]] = field(default_factory=dict)
    a: dict[str, str] = field(default_factory=dict)
    ptr: dict[str, str] = field(default_factory=dict)  # address -> name

    def arguments(self) -> list[str]:
        args = []
        for name, texts in self.txt.items():
            for text in texts:
                # dnsmasq splits a TXT record into strings at commas: 255-byte strings here.
                parts = [text[i : i + 255] for i in range(0, len(text), 255)]
                args.append(f"--txt-record={name}," + ",".join(parts))
        for name, hosts in self.mx.items():
            args += [f"--mx-host={name},{h},{10 + i}" for i, h in enumerate(hosts)]
        args += [f"--host-record={n},{ip}" for n, ip in self.a.items()]
        for ip, name in self.ptr.items():
            rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
            args.append(f"--ptr-record={rev},{name}")
        return args


class DnsServer:
    def __init__(self, zone: Zone, directory: Path) -> None:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(binary).exists():
            raise RuntimeError("dnsmasq is missing: `make system-deps` installs dnsmasq-base")
        self.port = _free_udp_port()
        self.log = directory / "dnsmasq.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [binary, "--keep-in-foreground", f"--port={self.port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             f"--pid-file={directory / 'dnsmasq.pid'}", "--log-facility=-", "--user=root",
             *zone.arguments()],
            stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(0.3)
        if self.proc.poll() is not None:
            self._out.close()
            raise RuntimeError(f"dnsmasq exited: {self.log.read_text()[-2000:]}")

    @property
    def nameservers(self) -> str:
        """DNS_NAMESERVERS for the product."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._out.close()
