"""Postgres: the schema (created idempotently by whichever service starts first) and the
few statements the services share. psycopg2 (the binary wheel already in the lock for MLflow):
no compiler or libpq headers in any image."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import date, datetime, timezone
from typing import Any, Iterable, Iterator

import psycopg2
import psycopg2.extras
import psycopg2.pool

# Advisory lock id: two services creating the schema at the same moment wait for each other.
_SCHEMA_LOCK = 0x6B736F7074
SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes (
    id               bigserial PRIMARY KEY,
    source           text             NOT NULL,
    underlying       text             NOT NULL,
    option_type      text             NOT NULL CHECK (option_type IN ('call', 'put')),
    strike           double precision NOT NULL CHECK (strike > 0),
    expiry           date             NOT NULL,
    bid              double precision NOT NULL CHECK (bid >= 0),
    ask              double precision NOT NULL CHECK (ask >= bid),
    underlying_price double precision NOT NULL CHECK (underlying_price > 0),
    rate             double precision NOT NULL,
    dividend_yield   double precision NOT NULL DEFAULT 0,
    scraped_at       timestamptz      NOT NULL,
    UNIQUE (source, underlying, option_type, strike, expiry)
);
CREATE TABLE IF NOT EXISTS implied_vols (
    quote_id    bigint PRIMARY KEY REFERENCES quotes (id) ON DELETE CASCADE,
    iv          double precision,
    error       text,
    years       double precision NOT NULL,
    mid         double precision NOT NULL,
    computed_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    event  text        NOT NULL,
    detail jsonb       NOT NULL DEFAULT '{}'::jsonb
);
"""


def ensure_schema(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cur.execute(SCHEMA)
    conn.commit()


class Database:
    """A small thread-safe pool; `ensure_schema` runs on the first connection."""

    def __init__(self, url: str, maxconn: int = 8):
        self.url = url
        self.maxconn = maxconn
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                pool = psycopg2.pool.ThreadedConnectionPool(1, self.maxconn, self.url, connect_timeout=5)
                conn = pool.getconn()
                try:
                    ensure_schema(conn)
                finally:
                    pool.putconn(conn)
                self._pool = pool
            return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        pool = self._get_pool()
        conn = pool.getconn()
        try:
            yield conn
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except psycopg2.Error:
                pass    # the connection is gone (the server went away): report the first error
            raise
        finally:
            pool.putconn(conn, close=conn.closed != 0)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None

    # -- statements -------------------------------------------------------------------

    def ping(self) -> None:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def upsert_quotes(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Insert or update quotes by (source, underlying, type, strike, expiry): a scrape run
        twice leaves one row per quote, with the latest bid/ask. Returns the rows' ids."""
        rows = list(rows)
        if not rows:
            return []
        cols = ("source", "underlying", "option_type", "strike", "expiry", "bid", "ask",
                "underlying_price", "rate", "dividend_yield", "scraped_at")
        with self.connection() as conn, conn.cursor() as cur:
            ids = psycopg2.extras.execute_values(
                cur,
                f"INSERT INTO quotes ({', '.join(cols)}) VALUES %s "
                "ON CONFLICT (source, underlying, option_type, strike, expiry) DO UPDATE SET "
                "bid = EXCLUDED.bid, ask = EXCLUDED.ask, underlying_price = EXCLUDED.underlying_price, "
                "rate = EXCLUDED.rate, dividend_yield = EXCLUDED.dividend_yield, "
                "scraped_at = EXCLUDED.scraped_at RETURNING id",
                [tuple(r[c] for c in cols) for r in rows], fetch=True)
        return [i[0] for i in ids]

    def quotes(self, *, underlying: str | None = None, ids: list[int] | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
        where, args = [], []
        if underlying:
            where.append("q.underlying = %s")
            args.append(underlying)
        if ids is not None:
            where.append("q.id = ANY(%s)")
            args.append(list(ids))
        sql = ("SELECT q.id, q.source, q.underlying, q.option_type, q.strike, q.expiry, q.bid, q.ask, "
               "q.underlying_price, q.rate, q.dividend_yield, q.scraped_at, v.iv, v.error AS iv_error, "
               "v.computed_at AS iv_computed_at FROM quotes q LEFT JOIN implied_vols v ON v.quote_id = q.id"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY q.underlying, q.expiry, q.option_type, q.strike LIMIT %s")
        args.append(limit)
        with self.connection() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return [_jsonable(dict(r)) for r in cur.fetchall()]

    def save_ivs(self, rows: Iterable[tuple[int, float | None, str | None, float, float]]) -> int:
        rows = [(qid, iv, err, years, mid, datetime.now(timezone.utc)) for qid, iv, err, years, mid in rows]
        if not rows:
            return 0
        with self.connection() as conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                "INSERT INTO implied_vols (quote_id, iv, error, years, mid, computed_at) VALUES %s "
                "ON CONFLICT (quote_id) DO UPDATE SET iv = EXCLUDED.iv, error = EXCLUDED.error, "
                "years = EXCLUDED.years, mid = EXCLUDED.mid, computed_at = EXCLUDED.computed_at", rows)
        return len(rows)

    def audit(self, event: str, detail: dict[str, Any]) -> int:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO audit_log (event, detail) VALUES (%s, %s) RETURNING id",
                        (event, json.dumps(detail, default=str)))
            return cur.fetchone()[0]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    for k, v in row.items():
        if isinstance(v, (datetime, date)):
            row[k] = v.isoformat()
    return row
