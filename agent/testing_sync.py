"""Helpers for tests and benchmarks (as ``agent.testing``): two real
Syncthings on loopback sharing one folder -- discovery, relays, NAT
traversal, usage reports and upgrades off; each with its own home, listen
address and GUI port, the other as its one device. Not used by the agent."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["FOLDER_ID", "Syncthing", "syncthing_pair"]

FOLDER_ID = "session-agent"
_STOP_TIMEOUT = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Syncthing:
    """One instance: ``start``/``stop`` as often as a test likes."""

    def __init__(self, name: str, home: Path, folder: Path) -> None:
        self.program = shutil.which("syncthing")
        assert self.program is not None, "syncthing is not installed (scripts/test installs it)"
        self.name, self.home, self.folder = name, home, folder
        self.port, self.gui_port = _free_port(), _free_port()
        self.log = home.parent / f"syncthing-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".stfolder").mkdir(exist_ok=True)  # the folder marker Syncthing looks for
        self._run("generate", f"--home={home}", "--no-default-folder", "--skip-port-probing")
        self.device_id = self._run("serve", f"--home={home}", "--device-id").strip()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "STNODEFAULTFOLDER": "1", "STNOUPGRADE": "1"}

    def _run(self, *args: str) -> str:
        assert self.program is not None
        done = subprocess.run(
            [self.program, *args], capture_output=True, text=True, env=self._env(), timeout=60, check=True
        )
        return done.stdout

    def share_with(self, peer: Syncthing, *, dials: bool) -> None:
        """Write the config: this folder shared with ``peer``, which this one
        dials at its loopback address if ``dials`` (only one of two may: two
        Syncthings dialling each other at once can stall in their Hello
        exchange for 20 s, measured with 1.19)."""
        path = self.home / "config.xml"
        tree = ElementTree.parse(path)  # noqa: S314 -- the file `syncthing generate` just wrote
        root = tree.getroot()
        options = root.find("options")
        assert options is not None
        for old in options.findall("listenAddress"):
            options.remove(old)
        listen = ElementTree.SubElement(options, "listenAddress")
        listen.text = f"tcp://127.0.0.1:{self.port}"
        for flag, value in (
            ("globalAnnounceEnabled", "false"),
            ("localAnnounceEnabled", "false"),
            ("relaysEnabled", "false"),
            ("natEnabled", "false"),
            ("urAccepted", "-1"),
            ("autoUpgradeIntervalH", "0"),
            ("crashReportingEnabled", "false"),
            ("reconnectionIntervalS", "1"),  # not 60: a dial made before the peer listened is retried at once
        ):
            element = options.find(flag)
            if element is None:
                element = ElementTree.SubElement(options, flag)
            element.text = value
        gui = root.find("gui")
        assert gui is not None
        address = gui.find("address")
        assert address is not None
        address.text = f"127.0.0.1:{self.gui_port}"
        for old in root.findall("folder"):
            root.remove(old)
        folder = ElementTree.Element(
            "folder",
            id=FOLDER_ID,
            label=FOLDER_ID,
            path=str(self.folder),
            type="sendreceive",
            rescanIntervalS="3600",
            fsWatcherEnabled="true",
            fsWatcherDelayS="1",
        )
        for device_id in (self.device_id, peer.device_id):
            ElementTree.SubElement(folder, "device", id=device_id)
        root.insert(0, folder)
        device = ElementTree.SubElement(
            root, "device", id=peer.device_id, name=peer.name, compression="metadata", introducer="false"
        )
        ElementTree.SubElement(device, "address").text = (
            f"tcp://127.0.0.1:{peer.port}" if dials else "dynamic"
        )
        tree.write(path)

    def start(self) -> None:
        assert self.program is not None
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.program,
                    "serve",
                    f"--home={self.home}",
                    "--no-browser",
                    "--no-restart",
                    "--no-upgrade",
                    f"--gui-address=http://127.0.0.1:{self.gui_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._env(),
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def syncthing_pair(root: Path, folder_a: Path, folder_b: Path) -> Iterator[tuple[Syncthing, Syncthing]]:
    """Two running Syncthings sharing ``folder_a`` and ``folder_b``, stopped after."""
    a = Syncthing("a", root / "syncthing-a", folder_a)
    b = Syncthing("b", root / "syncthing-b", folder_b)
    a.share_with(b, dials=True)
    b.share_with(a, dials=False)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()
