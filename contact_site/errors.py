"""Answers in the client's format: HTML pages or JSON bodies, with plain words, never a trace."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException


def wants_json() -> bool:
    """True when the client prefers JSON to HTML (`Accept: application/json`)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_answer(code: int, title: str, message: str,
                 field: str | None = None) -> ResponseReturnValue:
    """An error page or JSON body with plain words."""
    if wants_json():
        body = {"errors": {field: [message]}} if field else {"error": message}
        return jsonify(body), code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def other_http_error(error: HTTPException) -> ResponseReturnValue:
    """Every HTTP error without a handler of its own, in the client's format."""
    response = error.get_response()
    answer = error_answer(error.code or 500, error.name, error.description or error.name)
    if isinstance(answer, tuple) and isinstance(response, Response):
        for header in ("Retry-After", "Allow"):
            if header in response.headers:
                answer = (answer[0], answer[1], {header: response.headers[header]})
    return answer


def init_app(app: Flask) -> None:
    """Answer every HTTP error in the client's format."""
    app.register_error_handler(HTTPException, other_http_error)
