"""Where the format fixtures (`shared/fixtures`: files in the exact formats of the real assets) are.

In order: `$AGORA_TEST_FIXTURES`; `../shared/fixtures` beside this checkout; the same beside the
checkout this one was cloned from, when its `origin` is a local folder (`git clone . /tmp/x` for a
clean-clone CI run). The first folder that exists wins; otherwise the beside-this-checkout path is
returned, so a failing test names where the files were expected.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RELATIVE = Path("shared") / "fixtures"


def _origin_checkout() -> Path | None:
    try:
        url = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    return Path(url).resolve() if url and "://" not in url and ":" not in url.split("/")[0] else None


def find_fixtures() -> Path:
    candidates = [Path(os.environ["AGORA_TEST_FIXTURES"])] if os.environ.get("AGORA_TEST_FIXTURES") else []
    candidates.append(REPO.parent / RELATIVE)
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / RELATIVE)
    return next((c for c in candidates if c.is_dir()), REPO.parent / RELATIVE)


FIXTURES = find_fixtures()
