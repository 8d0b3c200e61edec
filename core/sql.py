"""Set-based SQL for the billing run's set-wise paths: many rows in one statement, no model
instance per row.

Django's `bulk_update` writes `CASE WHEN id = … THEN …` with one arm per row and per column, which
costs O(rows²) on SQLite (1.7 s for 300 rows here). `UPDATE … FROM (VALUES …)` joins the new values
instead; PostgreSQL and SQLite 3.33+ both have it, and `RETURNING` (SQLite 3.35+) says which rows
matched.

`rows_from` + `run` go further: a statement joins a whole batch as a relation. On PostgreSQL the
relation is `unnest` of one typed array per column, bound server-side in binary (Django's own
cursors bind on the client and spell every value out as text, which cost more than the insert
itself: issue 17); on SQLite it is a `VALUES` list. The statement around it is the caller's, in the
caller's transaction.
"""

import json
import time
from datetime import datetime

from django.db import connection
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.lookups import In

# How a parameter is typed inside VALUES on PostgreSQL (SQLite stores what it is given).
PG_TYPES = {"id": "bigint", "int": "integer", "datetime": "timestamptz", "decimal": "numeric", "text": "text"}


def update_from_values(model, columns: dict[str, str], rows: list[tuple], *, constants: dict | None = None,
                       where: str = "", where_params: tuple = ()) -> set:
    """Set, on each row of `model` whose primary key is the first value of a tuple in `rows`, the
    columns named in `columns` (name → kind: "int", "datetime", "decimal", "text") to the other
    values of that tuple, and every name in `constants` to its value. `where` narrows the rows
    (SQL over the table's own columns). Returns the primary keys of the rows updated."""
    if not rows:
        return set()
    ops = connection.ops
    pg = connection.vendor == "postgresql"
    table = ops.quote_name(model._meta.db_table)
    pk = ops.quote_name(model._meta.pk.column)
    kinds = ["id", *columns.values()]
    placeholder = "(" + ", ".join(f"%s::{PG_TYPES[kind]}" if pg else "%s" for kind in kinds) + ")"
    aliases = ", ".join(f"column{i + 1} AS v{i}" for i in range(len(kinds)))
    assignments = [f"{ops.quote_name(name)} = v.v{i + 1}" for i, name in enumerate(columns)]
    params: list = []
    for name, value in (constants or {}).items():
        assignments.append(f"{ops.quote_name(name)} = %s")
        params.append(_adapt(value))
    sql = (f"UPDATE {table} SET {', '.join(assignments)} "
           f"FROM (SELECT {aliases} FROM (VALUES {', '.join([placeholder] * len(rows))}) AS rows_) AS v "
           f"WHERE {table}.{pk} = v.v0{f' AND ({where})' if where else ''} RETURNING {pk}")
    for row in rows:
        params += [_adapt(value) for value in row]
    params += list(where_params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _adapt(value):
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


# A column's kind -> its array type on PostgreSQL (`rows_from`).
ARRAY_TYPES = {"id": "bigint", "int": "integer", "text": "text", "datetime": "timestamptz", "decimal": "numeric",
               "json": "jsonb", "bool": "boolean"}
SQLITE_MAX_ROWS_PARAMS = 30_000  # below SQLite's smallest default limit of bound parameters since 3.32 (32,766)


def rows_from(columns: dict[str, str], rows: list[tuple], alias: str = "v") -> tuple[str, list]:
    """A FROM item naming `rows` as the relation `alias(column, …)`, and its parameters.

    `columns` maps each column's name to its kind ("id", "int", "text", "datetime", "decimal",
    "json", "bool"). PostgreSQL: `unnest(%b::bigint[], …) AS v(…)`, one array per column, to run
    with `run` (server-side binary parameters); a column (but the first) holding one value in every
    row is bound once, as a scalar beside the arrays. SQLite: a `VALUES` list. `rows` must not be
    empty."""
    names = list(columns)
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        arrays, constants = [], []  # (name, kind, the column's values), (name, kind, its one value)
        for position, ((name, kind), values) in enumerate(zip(columns.items(), zip(*rows, strict=True),
                                                               strict=True)):
            if position and _same(kind, values):
                constants.append((name, kind, values[0]))
            else:
                arrays.append((name, kind, [Jsonb(value) for value in values] if kind == "json" else list(values)))
        unnest = ", ".join(f"%b::{ARRAY_TYPES[kind]}[]" for _name, kind, _values in arrays)
        if not constants:
            return f"unnest({unnest}) AS {alias}({', '.join(names)})", [values for *_, values in arrays]
        # A column with one value in every row (a batch's kind, currency, tax treatment…) is bound
        # once, not as an array of 500 copies: dumping the arrays' values is most of the binding.
        scalars = ", ".join(f"%b::{ARRAY_TYPES[kind]} AS {name}" for name, kind, _value in constants)
        return (f"(SELECT u.*, {scalars} FROM unnest({unnest}) AS u({', '.join(name for name, *_ in arrays)})) "
                f"AS {alias}", [value for *_, value in constants] + [values for *_, values in arrays])
    adapt = [_sqlite_adapter(kind) for kind in columns.values()]
    values = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(rows))
    aliases = ", ".join(f"column{i + 1} AS {name}" for i, name in enumerate(names))
    params = [f(value) if f else value for row in rows for f, value in zip(adapt, row, strict=True)]
    return f"(SELECT {aliases} FROM (VALUES {values})) AS {alias}", params


def _same(kind: str, values: tuple) -> bool:
    """Whether every one of `values` is the first, as the database would store it: decimals also
    by their exponent (1.0 and 1.00 are equal, not the same numeric); JSON is never compared."""
    if kind == "json" or values.count(values[0]) != len(values):
        return False
    return kind != "decimal" or len({str(value) for value in values}) == 1


def _sqlite_adapter(kind: str):
    if kind == "datetime":
        return connection.ops.adapt_datetimefield_value
    if kind == "json":
        return json.dumps
    return None


def probe_join(table: str, alias: str, on: str, columns: list[str], *, left: bool = False) -> str:
    """A join of `table` (as `alias`, its `columns` only) to a batch's relation, found row by row
    through the index `on` uses: on PostgreSQL a LATERAL subquery it cannot flatten (`OFFSET 0`).
    For a batch of 500 against a table of some thousands of rows the planner otherwise reads and
    hashes the whole table at every batch (10,000 accounts: `invoices.services.issue_facts` took
    7.4 ms a batch, 4.0 ms probed; at 100,000 it probes by itself). `left`: rows without a match
    stay, with NULLs."""
    if connection.vendor == "postgresql":
        join = "LEFT JOIN LATERAL" if left else "CROSS JOIN LATERAL"
        return (f"{join} (SELECT {', '.join(f'{alias}.{column}' for column in columns)} FROM {table} {alias} "
                f"WHERE {on} OFFSET 0) AS {alias}{' ON true' if left else ''}")
    return f"{'LEFT ' if left else ''}JOIN {table} {alias} ON {on}"


def chunks(rows: list, columns: int) -> list[list]:
    """`rows` cut so that each statement binds at most SQLite's number of parameters (one chunk on
    PostgreSQL, whose arrays are one parameter per column)."""
    if connection.vendor == "postgresql" or not rows:
        return [rows] if rows else []
    size = max(1, SQLITE_MAX_ROWS_PARAMS // max(1, columns))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def run(sql: str, params: list, *, binary: bool = False) -> list[tuple]:
    """Execute one statement on Django's connection, in its current transaction, and return the
    rows it returns (none: []). PostgreSQL: a psycopg cursor with server-side parameters, so the
    `%b` arrays of `rows_from` travel in binary; `%s` is a parameter on both. `binary`: the rows
    come back in binary too (PostgreSQL), decoded by psycopg's own loaders, not Django's."""
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        start = time.monotonic()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, binary=binary)
            rows = cursor.fetchall() if cursor.description else []
        if connection.queries_logged:  # seen by DEBUG and by tests that count statements, as Django's are
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})
        return rows
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def values_of(queryset) -> list[tuple]:
    """The rows of a `values_list` queryset as tuples. On PostgreSQL its SQL runs through `run`
    with binary results: Django's cursor decodes every timestamp from text in Python (its own
    time-zone loader), which cost more than the billing run's claim itself (issue 17). For columns
    that Django converts no further on PostgreSQL (numbers, text, timestamps), as `values_list`
    would return them."""
    if connection.vendor != "postgresql":
        return list(queryset)
    statement, params = queryset.query.sql_with_params()
    return run(statement, list(params), binary=True)


class AnyOf(Lookup):
    """`field__any=values`: the field's value is one of `values`, bound as one array parameter on
    PostgreSQL (`= ANY(%s::type[])`) instead of `IN (%s, %s, …)` with one parameter per value.

    For the billing run's batch reads (500 ids or keys a statement): Django prepares and compiles
    `__in` value by value and psycopg then splits the query at every placeholder, which cost more
    than the reads themselves (issue 17). On other databases it is `__in`."""

    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self):
        return list(self.rhs)

    def as_sql(self, compiler, connection):
        if connection.vendor != "postgresql":
            return In(self.lhs, self.rhs).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        kind = field.target_field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
        if kind in ("bigint", "integer") and all(type(value) is int for value in self.rhs):
            # Ids (the batch reads' usual case) as one array literal: Django's cursor would prepare
            # them one by one and then spell the list out as text value by value.
            return f"{lhs} = ANY(%s::{kind}[])", (*lhs_params, "{" + ",".join(map(str, self.rhs)) + "}")
        values = [field.get_db_prep_value(value, connection, prepared=False) for value in self.rhs]
        return f"{lhs} = ANY(%s::{kind}[])", (*lhs_params, values)


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # relations keep their own lookups
