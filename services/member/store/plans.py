"""Plans that do not depend on the planner's statistics (issue 17).

A member's ledger and lots are read in index order with a LIMIT (a page of the newest
entries, the head of the lots' queue, the first expiry, the first credit in the window).
On PostgreSQL without fresh statistics (this machine runs no autovacuum; production's lags
behind a busy account), the planner guesses a few dozen rows per member and prefers a bitmap
scan of ALL the member's rows and a top-N sort: 18 ms for a page at 100k entries, against
0.1 ms for the index read backwards. `in_index_order` runs such a query with sorts and bitmap
scans off (the index's order is then the only plan left), and puts them back for the rest
of the transaction; SQLite plans these by the index anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_SET = sa.text(
    "SELECT set_config('enable_sort', :v, true), set_config('enable_bitmapscan', :v, true)"
)


async def in_index_order(
    conn: AsyncConnection, query: sa.Executable, params: Mapping[str, Any]
) -> Sequence[sa.Row[Any]]:
    """`query`'s rows, read in the order of the index it names (PostgreSQL: no sort)."""
    if conn.dialect.name != "postgresql":
        return (await conn.execute(query, params)).all()
    await conn.execute(_SET, {"v": "off"})
    try:
        return (await conn.execute(query, params)).all()
    finally:
        await conn.execute(_SET, {"v": "on"})
