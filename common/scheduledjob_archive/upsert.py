"""The statements of an execution row's numbered upsert (repository.Archive._upsert), built once per
dialect and run with each row's values as parameters.

Built anew for every row (`insert(...).values(**row)`, its `excluded` columns, the conflict clause, a
cache key over all of it) they were a fifth of the operator's CPU while 1,000 runs started in one minute
(`py-spy` in bench-scale's schedule-delay phase), on the two cores the API server and the CronJob
controller need then. The same statement objects keep their cache key and compiled form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from scheduledjob.diagnostics import DIAGNOSTIC_FIELDS
from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from scheduledjob_archive.tables import executions

# On a conflict (the Job's row exists): these follow the newer observation...
OUTCOME = ("status", "status_rank", "finished_at", "runtime_ms", "cancelled_by", "message", "archived_at")
# ...these keep what they were once set to...
KEPT_ONCE_SET = ("requested_by", "request_reason", "started_at")
# ...and the diagnostics keep their first values (what the pods showed when the run ended).
FIRST_WINS = DIAGNOSTIC_FIELDS


@dataclass(frozen=True)
class UpsertStatements:
    # Parameters `uid` and `job`: the row's transaction id, counted stage and status if it exists, and the
    # job's highest transaction id, in one round trip (a slow database link pays per statement).
    known: Select[int | None, int | None, int, str | None]
    upsert: Insert  # parameters: the row's values, its transaction_id among them
    upsert_returning: Insert  # the same, with the row as the statement left it


@functools.cache
def statements(dialect_name: str) -> UpsertStatements:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    c = executions.c
    mine = c.uid == bindparam("uid")
    known = select(
        select(c.transaction_id).where(mine).scalar_subquery(),
        select(c.ledgered_rank).where(mine).scalar_subquery(),
        select(func.coalesce(func.max(c.transaction_id), 0))
        .where(c.scheduled_job_id == bindparam("job"))
        .scalar_subquery(),
        select(c.status).where(mine).scalar_subquery(),
    )
    insert = dialect.insert(executions)
    new = insert.excluded
    changes = {name: new[name] for name in OUTCOME}
    changes.update({name: func.coalesce(new[name], c[name]) for name in KEPT_ONCE_SET})
    changes.update({name: func.coalesce(c[name], new[name]) for name in FIRST_WINS})
    forwards = or_(c.status_rank < new.status_rank, and_(c.status_rank == new.status_rank, c.status == new.status))
    upsert = insert.on_conflict_do_update(index_elements=[c.uid], set_=changes, where=forwards)
    return UpsertStatements(known=known, upsert=upsert, upsert_returning=upsert.returning(*executions.c))
