"""A real OpenID provider for the console's tests: the npm package `oidc-provider`, started
as a Node process (tests/browser/provider.mjs) on a free port with one client."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent


class Provider:
    def __init__(self, port: int, redirect_uri: str, forge_as: str, log: Path) -> None:
        if shutil.which("node") is None or not (HERE / "node_modules/oidc-provider").is_dir():
            raise RuntimeError("run `make test` (npm ci in tests/browser) first")
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.client_id = "console-tests"
        self.client_secret = "console-tests-client-secret"
        self.log = log
        env = {
            "PATH": os.environ["PATH"],
            "PORT": str(port),
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.client_secret,
            "REDIRECT_URI": redirect_uri,
            "FORGE_AS": forge_as,
            "NODE_ENV": "development",
        }
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            ["node", str(HERE / "provider.mjs")],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=HERE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"{self.issuer}/.well-known/openid-configuration"
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._out.close()
