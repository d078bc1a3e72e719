"""A headless Chromium driven over the DevTools protocol (CDP) on a pipe: no websocket, no npm.

Used by the browser test, the browser benchmark and the viewer screenshot. Chromium is started with
`--remote-debugging-pipe`: CDP messages are NUL-terminated JSON on file descriptors 3 (to the
browser) and 4 (from it). WebGL2 runs on SwiftShader (software), so no GPU is needed.

    with HeadlessBrowser() as browser:
        page = browser.open("http://127.0.0.1:8000/index.html", width=512, height=512)
        page.evaluate("window.agora.ready", await_promise=True)
        png = page.screenshot()
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from agora_core.errors import AgoraError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Quiet, reproducible, offline: no network side traffic, no first-run UI, software WebGL2.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic", "--disable-default-apps", "--disable-extensions", "--mute-audio", "--no-default-browser-check",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--remote-debugging-pipe",
)  # fmt: skip


def find_chromium() -> str | None:
    """Path of a Chromium executable ($AGORA_CHROMIUM, then the usual Debian paths), or None."""
    env = os.environ.get("AGORA_CHROMIUM")
    for path in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


class CdpError(RuntimeError):
    """A DevTools command failed, or JavaScript threw."""


class HeadlessBrowser:
    """One headless Chromium process with a fresh profile; a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise AgoraError("chromium not found: install it (apt-get install chromium) or set $AGORA_CHROMIUM")
        self.timeout = timeout
        self._next_id = 0
        self._pending: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._profile = tempfile.mkdtemp(prefix="agora-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child sees the pipe ends as fds 3 (reads commands) and 4 (writes replies).
        def _child_fds() -> None:  # runs in the forked child before exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_child_fds, pass_fds=(3, 4, to_browser_r, from_browser_w))  # 3, 4: kept open after the dup2
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._stderr_tail: list[str] = []
        self.events: list[dict] = []  # CDP events (messages without an id), e.g. console and log entries
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    # --- plumbing -----------------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        for line in iter(self.process.stderr.readline, b""):
            self._stderr_tail = (self._stderr_tail + [line.decode(errors="replace").rstrip()])[-20:]

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._pending[msg["id"]] = msg
                        self._cond.notify_all()
                elif len(self.events) < 10_000:
                    self.events.append(msg)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one CDP command and wait for its result (raises `CdpError` on an error reply)."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while msg_id not in self._pending:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "exited" if self._closed else f"timed out after {timeout or self.timeout:.0f} s"
                    raise CdpError(f"chromium {why} during {method}: " + " | ".join(self._stderr_tail[-5:]))
                self._cond.wait(min(left, 0.5))
            reply = self._pending.pop(msg_id)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # --- pages --------------------------------------------------------------------------------------
    def open(self, url: str, width: int = 800, height: int = 600) -> "Page":
        """A new tab of `width`×`height` CSS pixels (device scale 1) showing `url` (load awaited)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Page.navigate", {"url": url})
        page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                      "addEventListener('load', () => r()))", await_promise=True)
        return page

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except CdpError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "HeadlessBrowser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One attached tab: evaluate JavaScript, take screenshots."""

    def __init__(self, browser: HeadlessBrowser, session_id: str):
        self.browser, self.session_id = browser, session_id

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.send(method, params, self.session_id, timeout)

    def evaluate(self, expression: str, await_promise: bool = False, timeout: float | None = None):
        """Value of a JavaScript expression (JSON-serialisable), awaiting it if it is a promise."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": await_promise,
                                                "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)
