"""The app's own state, kept the way Flask extensions keep theirs: one object per concern.

Flask-Mail keeps its state as one object in `app.extensions["mail"]`; each module of
ours that keeps something per app (the delivery backend, this process's pool, the
time the spam rules last pruned) declares a small dataclass, every field with a
default, and reaches the app's one instance through `state_of(app, TheClass)`. The
object is stored under the class's dotted name, so keys never collide and every
reader gets a typed value, not a string-keyed `Any`.
"""

from __future__ import annotations

from typing import TypeVar, cast

from flask import Flask

State = TypeVar("State")


def key_of(kind: type[object]) -> str:
    """The `app.extensions` key of a state class: its dotted name."""
    return f"{kind.__module__}.{kind.__qualname__}"


def state_of(app: Flask, kind: type[State]) -> State:
    """The app's one `kind` object, made by `kind()` at first use."""
    key = key_of(kind)
    found = app.extensions.get(key)
    if found is None:
        # dict.setdefault is atomic: two threads asking at once share one object.
        found = app.extensions.setdefault(key, kind())
    return cast(State, found)
