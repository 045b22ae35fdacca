"""Database models: user profiles and their append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db

OPERATIONS: tuple[str, ...] = ("create", "update", "delete", "restore")


class User(db.Model):
    """A user profile edited by support staff. Never hard-deleted."""

    __tablename__ = "users"
    # Read by the audit listeners: every change to this model gets an entry.
    __audited__ = True

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # active_history loads the old value before an overwrite, so the audit
    # snapshot of the previous state is right even for expired attributes.
    name: Mapped[str] = mapped_column(String(255), active_history=True)
    email: Mapped[str] = mapped_column(String(255), active_history=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), active_history=True
    )
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__: dict[str, Any] = {  # noqa: RUF012
        "version_id_col": version,
        # Fetch server-generated timestamps with RETURNING instead of a reload.
        "eager_defaults": True,
    }
    __table_args__ = (
        CheckConstraint("char_length(btrim(name)) between 1 and 255", name="name_length"),
        CheckConstraint("char_length(email) between 3 and 255", name="email_length"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index(
            "uq_users_lower_email_active",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # Substring search on name and email (ILIKE '%...%').
        Index(
            "ix_users_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index(
            "ix_users_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
    )

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} v{self.version}>"


class UserAudit(db.Model):
    """One change of one profile. Rows are only ever inserted."""

    __tablename__ = "user_audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # RESTRICT: a profile with history can never be removed from under it.
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="RESTRICT"))
    operation: Mapped[str] = mapped_column(String(16))
    # clock_timestamp(), not now(): entries of one transaction keep their order.
    timestamp: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    previous_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    new_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    changed_fields: Mapped[list[str]] = mapped_column(ARRAY(Text))
    version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "operation in ('create', 'update', 'delete', 'restore')", name="operation_known"
        ),
        CheckConstraint(
            "(operation = 'create') = (previous_data is null)", name="previous_data_iff_not_create"
        ),
        # The timeline's keyset orders: newest first, optionally per user or operation.
        Index("ix_user_audit_timestamp_id", "timestamp", "id"),
        Index("ix_user_audit_user_id_timestamp_id", "user_id", "timestamp", "id"),
        Index("ix_user_audit_operation_timestamp_id", "operation", "timestamp", "id"),
        Index("ix_user_audit_changed_fields", "changed_fields", postgresql_using="gin"),
    )

    def __repr__(self) -> str:
        return f"<UserAudit {self.id} {self.operation} user={self.user_id} v{self.version}>"
