"""Database errors as they may be logged: without what the caller sent (DESIGN.md §8).

`hide_parameters=True` (mesh/db.py) keeps SQL parameters out of SQLAlchemy's messages, but
the driver's own message can still quote a value: PostgreSQL's `invalid input syntax for
type integer: "<value>"` or `DETAIL: Key (mobile)=(<value>) already exists`. `loggable()`
replaces every database error in an exception's chain by a `WithheldDatabaseError` that
keeps what helps an operator (the error classes, SQLSTATE, constraint, table and column
names, the statement with its placeholders) and the traceback, and drops the message.
Errors are recognised by their module (SQLAlchemy or a driver), so nothing is imported.
"""

from __future__ import annotations

from typing import Any

_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "aiosqlite", "asyncpg")
_MAX_STATEMENT = 500
_MAX_CHAIN = 16


class WithheldDatabaseError(Exception):
    """A database error whose message was withheld from the logs."""


def is_database_error(error: BaseException) -> bool:
    """Whether `error` comes from SQLAlchemy or a database driver."""
    return type(error).__module__.split(".", 1)[0] in _MODULES


def loggable(error: BaseException) -> BaseException:
    """`error` fit for the logs: database errors in it (itself or its cause/context chain)
    replaced by their withheld summaries. The chain is rewritten in place: call it only
    on an error that is logged and then dropped."""
    if is_database_error(error):
        return _withheld(error)
    link = error
    for _ in range(_MAX_CHAIN):
        cause = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
        if cause is None:
            break
        if is_database_error(cause):
            link.__cause__ = _withheld(cause)
            link.__suppress_context__ = True
            break
        link = cause
    return error


def _withheld(error: BaseException) -> WithheldDatabaseError:
    orig: Any = getattr(error, "orig", None)
    names = [_name(error)] + ([_name(orig)] if isinstance(orig, BaseException) else [])
    facts = [f"sqlstate={code}"] if (code := _sqlstate(orig or error)) else []
    diag = getattr(orig or error, "diag", None)
    for attribute in ("constraint_name", "table_name", "column_name"):
        value = getattr(diag, attribute, None)
        if value:
            facts.append(f"{attribute.removesuffix('_name')}={value}")
    statement = getattr(error, "statement", None)
    text = f"{' from '.join(names)}" + (f" ({', '.join(facts)})" if facts else "")
    if statement:
        text += f" [SQL: {str(statement)[:_MAX_STATEMENT]}]"
    withheld = WithheldDatabaseError(f"{text}; message withheld: it may quote request data")
    withheld.__traceback__ = error.__traceback__
    withheld.__suppress_context__ = True
    return withheld


def _name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


def _sqlstate(error: Any) -> str | None:
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if code is None:
        code = getattr(error, "sqlite_errorname", None)
    return str(code) if code else None
