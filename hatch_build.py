"""Build hooks: the package carries the repository's templates, static files, compiled
catalogues, migrations and gunicorn settings, and takes its dependencies from requirements.txt.

The repository keeps those folders at the top level, beside contact_site/; a wheel puts
them in contact_site/resources/, where contact_site/paths.py finds them once installed.
The catalogues are compiled here (the .mo files are built, never committed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

ROOT = Path(__file__).resolve().parent
RESOURCES = "contact_site/resources"
# Copied as they are; translations/ goes compiled (below).
FOLDERS = ("templates", "static", "migrations")
FILES = ("gunicorn.conf.py",)


class CustomMetadataHook(MetadataHookInterface):
    """The dependencies are requirements.txt's pins: one list for the venv and the package."""

    def update(self, metadata: dict[str, Any]) -> None:
        """Read requirements.txt, without its comments."""
        lines = (ROOT / "requirements.txt").read_text().splitlines()
        metadata["dependencies"] = [line.split("#")[0].strip() for line in lines
                                    if line.split("#")[0].strip()]


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Resources into the wheel, with every catalogue compiled."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Map the folders into contact_site/resources/ and add the compiled catalogues."""
        if self.target_name != "wheel":
            return
        include = build_data["force_include"]
        for folder in FOLDERS:
            include[str(ROOT / folder)] = f"{RESOURCES}/{folder}"
        for name in FILES:
            include[str(ROOT / name)] = f"{RESOURCES}/{name}"
        self._compiled = tempfile.TemporaryDirectory()
        for po in sorted((ROOT / "translations").glob("*/LC_MESSAGES/messages.po")):
            language = po.parent.parent.name
            mo = Path(self._compiled.name) / language / "messages.mo"
            mo.parent.mkdir(parents=True)
            with po.open("rb") as source, mo.open("wb") as target:
                write_mo(target, read_po(source, locale=language))
            include[str(mo)] = f"{RESOURCES}/translations/{language}/LC_MESSAGES/messages.mo"

    def finalize(self, version: str, build_data: dict[str, Any], artifact: str) -> None:
        """Remove the compiled catalogues' temporary folder."""
        if hasattr(self, "_compiled"):
            self._compiled.cleanup()
