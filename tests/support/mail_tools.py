"""Reading a sent mail as its receiver's software would: SpamAssassin's verdict, munpack's files.

spam_report() runs `spamassassin -L -t` (local rules only: no DNS, no network) with nothing of
the machine's or the user's own settings: the distribution's rules (/usr/share/spamassassin,
never rules a past sa-update left elsewhere), its plugin loaders (*.pre), no local.cf, no
Bayes, and a HOME in a temporary folder. One call takes a few seconds (Perl compiles the
rules each time).

munpack_files() runs `munpack` in a temporary folder and returns the files it saved.
"""

from __future__ import annotations

import email.policy
import os
import re
import subprocess
import tempfile
from email.parser import BytesHeaderParser
from pathlib import Path

from support.settings import skip_or_fail

__all__ = ["MUNPACK", "SPAMASSASSIN", "munpack_files", "spam_report"]

SPAMASSASSIN = Path("/usr/bin/spamassassin")
MUNPACK = Path("/usr/bin/munpack")
# The rules the distribution ships: the same on every machine with the same package.
RULES = Path("/usr/share/spamassassin")
# Where the plugins are loaded (*.pre); the local.cf beside them is the site's and left out.
SITE_CONFIG = Path("/etc/spamassassin")
# A well-formed test mail is scored in about 2.5 s; allow for a loaded machine.
SPAMASSASSIN_TIMEOUT = 60.0
MUNPACK_TIMEOUT = 30.0
# Bayes learns from every mail it sees: a score would then depend on the mails before it.
PREFS = "use_bayes 0\nbayes_auto_learn 0\n"
_STATUS = re.compile(r"score=(?P<score>-?[0-9.]+).*?tests=(?P<tests>\S*)", re.DOTALL)


def _require(program: Path, package: str) -> None:
    """Skip (fail under CI=true) when `program` is not installed."""
    if not program.exists():
        skip_or_fail(f"{program} not found (scripts/ensure-system-packages installs {package})")


def spam_report(raw: bytes) -> tuple[float, list[str]]:
    """SpamAssassin's score for this mail and the names of the rules that fired."""
    _require(SPAMASSASSIN, "spamassassin")
    with tempfile.TemporaryDirectory(prefix="spamassassin-") as folder:
        home = Path(folder)
        site = home / "site"
        site.mkdir()
        for loader in SITE_CONFIG.glob("*.pre"):
            (site / loader.name).symlink_to(loader)
        (home / "user_prefs").write_text(PREFS)
        result = subprocess.run(
            [str(SPAMASSASSIN), "-L", "-t", "-x", f"--configpath={RULES}",
             f"--siteconfigpath={site}", f"--prefspath={home / 'user_prefs'}"],
            input=raw, capture_output=True, timeout=SPAMASSASSIN_TIMEOUT,
            env={**os.environ, "HOME": str(home)})
    if result.returncode != 0:
        raise RuntimeError(f"spamassassin failed ({result.returncode}): "
                           f"{result.stderr.decode(errors='replace')}")
    return _parse_status(result.stdout)


def _parse_status(checked: bytes) -> tuple[float, list[str]]:
    """Score and rule names from the X-Spam-Status header SpamAssassin added."""
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(checked)
    status = " ".join(str(headers.get("X-Spam-Status", "")).split())
    # Folding may split the list of tests after a comma: rejoin before matching.
    match = _STATUS.search(status.replace(", ", ","))
    if match is None:
        raise RuntimeError(f"no X-Spam-Status in SpamAssassin's output:\n{checked[:2000]!r}")
    tests = match["tests"]
    names = [] if tests in {"", "none"} else tests.split(",")
    return float(match["score"]), names


def munpack_files(raw: bytes) -> dict[str, bytes]:
    """The files munpack saves from this mail (attachments), by file name."""
    _require(MUNPACK, "mpack")
    with tempfile.TemporaryDirectory(prefix="munpack-") as folder:
        result = subprocess.run([str(MUNPACK), "-q", "-C", folder], input=raw,
                                capture_output=True, timeout=MUNPACK_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"munpack failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}")
        return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir())
                if path.is_file()}
