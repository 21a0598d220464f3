"""What a Content-Security-Policy without 'unsafe-inline' would block on a page."""

from __future__ import annotations

from html.parser import HTMLParser


class InlineCode(HTMLParser):
    """Collects inline scripts and styles, event handler attributes and javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or (tag == "script" and "src" not in names):
            self.found.append(f"<{tag}>")
        self.found += [f"{tag}[{name}]" for name in names if name == "style"
                       or name.startswith("on")]
        self.found += [f"{tag}[{name}]" for name, value in attrs
                       if value and value.strip().lower().startswith("javascript:")]


def inline_code(html: str) -> list[str]:
    """What the page holds that the policy would block."""
    parser = InlineCode()
    parser.feed(html)
    return parser.found
