"""Checking one uploaded file: size, name, extension and the content its bytes prove."""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from typing import IO

import filetype
from flask import current_app
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from ..submissions.files import CheckedUpload

MAX_NAME_LENGTH = 120
# filetype names some kinds differently from the extensions people use.
KIND_ALIASES = {"apng": "png", "jpeg": "jpg"}
TEXT_SNIFF_BYTES = 64 * 1024
# Text a browser or viewer would run as markup, refused even with a .txt name.
MARKUP_PREFIXES = (b"<!doctype", b"<html", b"<svg", b"<?xml", b"<script", b"<!--", b"<head",
                   b"<body", b"<iframe", b"<object", b"<embed", b"<meta", b"<?php", b"<%")
# Characters Windows refuses in names, and quotes: replaced so a saved attachment keeps its name.
UNSAFE_NAME_CHARACTERS = re.compile(r'[<>:"|?*]')


class UploadTooLarge(RequestEntityTooLarge):
    """The file alone is over CONTACT_MAX_UPLOAD_MB (answered with 413)."""


class UploadRefused(ValueError):
    """The file is of a kind, content or name the site does not accept."""


def too_large_message() -> str:
    """The words used for an oversize file, by the server and the page's script."""
    return f"The file is larger than the limit of {current_app.config['CONTACT_MAX_UPLOAD_MB']} MB."


def bad_type_message() -> str:
    """The words used for a file type not on the allowlist."""
    allowed = ", ".join(current_app.config["CONTACT_ALLOWED_EXTENSIONS"])
    return f"Files of this type are not accepted. Allowed types: {allowed}."


def neutral_filename(raw: str) -> str:
    """The original name without path parts, control or direction characters, shortened."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in {"C", "Z"} or c == " ")
    name = UNSAFE_NAME_CHARACTERS.sub("_", name)
    name = unicodedata.normalize("NFC", name).strip(" .")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        keep = MAX_NAME_LENGTH - len(ext) - 1
        name = f"{stem[:keep]}.{ext}" if dot and len(ext) <= 10 else name[:MAX_NAME_LENGTH]
    return name


def _size(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _sniff(stream: IO[bytes], extension: str) -> str | None:
    """The MIME type the bytes prove for this extension, or None when they disagree."""
    head = stream.read(TEXT_SNIFF_BYTES)
    stream.seek(0)
    kind = filetype.guess(head)
    if kind is not None:
        sniffed = KIND_ALIASES.get(kind.extension, kind.extension)
        return kind.mime if sniffed == KIND_ALIASES.get(extension, extension) else None
    if extension == "txt" and _is_plain_text(head):
        return "text/plain"
    return None


def _is_plain_text(head: bytes) -> bool:
    """UTF-8 text without control characters, and not markup a browser would run."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    if any(unicodedata.category(c) == "Cc" and c not in "\t\r\n\f" for c in text):
        return False
    return not head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(MARKUP_PREFIXES)


def check(file: FileStorage) -> CheckedUpload:
    """Check size, name, extension and sniffed content; raise on the first problem."""
    config = current_app.config
    size = _size(file.stream)
    if size > config["CONTACT_MAX_UPLOAD_BYTES"]:
        raise UploadTooLarge(too_large_message())
    if size == 0:
        raise UploadRefused("The file is empty.")
    filename = neutral_filename(file.filename or "")
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension not in config["CONTACT_ALLOWED_EXTENSIONS"]:
        raise UploadRefused(bad_type_message())
    content_type = _sniff(file.stream, extension)
    if content_type is None:
        raise UploadRefused(f"The file's content is not a .{extension} file.")
    return CheckedUpload(file.stream, filename, extension, content_type, size)
