"""Answers in the client's format: HTML pages or JSON bodies, with plain words, never a trace."""

from __future__ import annotations

import errno

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

# What a database that cannot take a write raises: locked, unreachable, out of disk,
# no free connection in the pool. Any other error is a bug and stays a 500.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# Werkzeug's titles and descriptions are English only: these are said in the visitor's
# language. The English descriptions are Werkzeug's own, so English answers are unchanged.
HTTP_WORDS: dict[int, tuple[LazyString, LazyString]] = {
    400: (_l("Bad request"), _l("The browser (or proxy) sent a request that this server could "
                                "not understand.")),
    403: (_l("Forbidden"), _l("You don't have the permission to access the requested resource. "
                              "It is either read-protected or not readable by the server.")),
    404: (_l("Page not found"), _l("The requested URL was not found on the server. If you "
                                   "entered the URL manually please check your spelling and "
                                   "try again.")),
    405: (_l("Method not allowed"), _l("The method is not allowed for the requested URL.")),
    413: (_l("The file is too large"), _l("The data value transmitted exceeds the capacity "
                                          "limit.")),
    429: (_l("Too many requests"), _l("This user has exceeded an allotted request count. Try "
                                      "again later.")),
    500: (_l("Something went wrong"), _l("The server encountered an internal error and was "
                                         "unable to complete your request. Either the server is "
                                         "overloaded or there is an error in the application.")),
    503: (_l("Service unavailable"), _l("The server is temporarily unable to service your "
                                        "request due to maintenance downtime or capacity "
                                        "problems. Please try again later.")),
}


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


def is_unavailable(error: BaseException) -> bool:
    """True for the database (or the upload disk) being unable to take a submission now."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL
    return isinstance(error, DATABASE_UNAVAILABLE)


def error_class(error: BaseException) -> str:
    """The error's class, and its driver's: never its text, which may quote the data."""
    name = type(error).__name__
    original = error.orig if isinstance(error, DBAPIError) else None
    if original is not None:
        name = f"{name} ({type(original).__module__}.{type(original).__name__})"
    return name


def other_http_error(error: HTTPException) -> ResponseReturnValue:
    """Every HTTP error without a handler of its own, in the client's format."""
    response = error.get_response()
    code = error.code or 500
    title, message = HTTP_WORDS.get(code, (error.name, error.description or error.name))
    if error.description and error.description != type(error).description:
        message = error.description  # the app's own words, already in the request's language
    answer = error_answer(code, str(title), str(message))
    answered = make_response(answer)
    for header in ("Retry-After", "Allow"):  # the error's own headers (429, 405) are kept
        if isinstance(response, Response) and header in response.headers:
            answered.headers[header] = response.headers[header]
    return answered


def init_app(app: Flask) -> None:
    """Answer every HTTP error in the client's format."""
    app.register_error_handler(HTTPException, other_http_error)
