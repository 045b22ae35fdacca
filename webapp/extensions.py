"""Flask extensions, created once and bound to an app in ``create_app``."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from webapp.audit.session import AuditedSession

# Deterministic constraint names keep migrations reviewable and reversible.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects keep their values after COMMIT: what was flushed is what committed
# (a profile's server-set columns come back through RETURNING), so answering
# a save needs no reload. Expiring them would cost every save a BEGIN, a
# SELECT and a ROLLBACK after its COMMIT, only to read the same values back.
db = SQLAlchemy(
    model_class=Base,
    session_options={"class_": AuditedSession, "expire_on_commit": False},
)
migrate = Migrate()
csrf = CSRFProtect()
