"""Database models: user profiles and their append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db

# "erase": the profile's data key was destroyed and the profile anonymised.
OPERATIONS: tuple[str, ...] = ("create", "update", "delete", "restore", "erase")
ROLES: tuple[str, ...] = ("admin", "support", "auditor")
# "database": written by the safety-net trigger for a change that bypassed the app.
CHANNELS: tuple[str, ...] = ("web", "api", "cli", "database")


class User(db.Model):
    """A user profile edited by support staff. Never hard-deleted."""

    __tablename__ = "users"
    # Read by the audit listeners: every change to this model gets an entry.
    __audited__ = True

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # active_history loads the old value before an overwrite, so the audit
    # snapshot of the previous state is right even for expired attributes.
    # "personal": encrypted with the profile's data key wherever the audit
    # trail keeps them (webapp.audit.personal_data), so that they can be erased.
    name: Mapped[str] = mapped_column(String(255), active_history=True, info={"personal": True})
    email: Mapped[str] = mapped_column(String(255), active_history=True, info={"personal": True})
    # HMAC-SHA-256 of the lower-cased email under PRIVACY_INDEX_KEY: the
    # active profiles' uniqueness and exact look-ups, without the address.
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), active_history=True
    )
    version: Mapped[int] = mapped_column(Integer)
    # Set when the profile was erased (webapp.services.privacy); it then
    # holds placeholders only and can no longer be changed.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Loaded with the profile: a save needs it to encrypt its entry.
    data_key: Mapped[ProfileDataKey | None] = relationship(lazy="joined", back_populates="user")

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
            "uq_users_email_index_active",
            "email_index",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
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

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} v{self.version}>"


#: The profile's fields that hold personal data, declared once on the model.
PERSONAL_FIELDS: tuple[str, ...] = tuple(
    column.key for column in User.__table__.columns if column.info.get("personal")
)


class ProfileDataKey(db.Model):
    """A profile's data key, wrapped by a master key (``webapp.audit.personal_data``).

    Erasing the profile destroys it: ``wrapped_key`` becomes null, and every
    personal value of the profile's history with it. Kept apart from the
    profiles so that backups can treat it apart (README, "Privacy").
    """

    __tablename__ = "profile_data_keys"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True
    )
    # Which master key wrapped it (ConfiguredMasterKeys' public key id).
    master_key_id: Mapped[str | None] = mapped_column(String(32))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="data_key")

    __table_args__ = (
        CheckConstraint(
            "(wrapped_key IS NULL) = (erased_at IS NOT NULL) "
            "AND (wrapped_key IS NULL) = (master_key_id IS NULL)",
            name="erased_or_wrapped",
        ),
        Index("ix_profile_data_keys_master_key_id", "master_key_id"),
    )


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
    # Who made the change and from where. The label is copied, not joined, so
    # it still says who it was after the account is renamed or deactivated.
    actor_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("staff.id", ondelete="RESTRICT")
    )
    actor_label: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(8))
    channel_detail: Mapped[str | None] = mapped_column(String(100))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    # The server's own id of the request; a client's X-Request-ID is only kept beside it.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Written by the database's safety net for a change that bypassed the app.
    unattributed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # HMAC of the entry's canonical bytes (webapp.audit.seal), made by the
    # application in the entry's own INSERT; none on safety-net entries.
    seal: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The API token the change came through: with its creator, it tells an
    # admin acting through another account's token from that account itself.
    token_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("api_tokens.id", ondelete="RESTRICT")
    )
    client_request_id: Mapped[str | None] = mapped_column(String(128))

    token: Mapped[ApiToken | None] = relationship(lazy="select", viewonly=True)
    # Loaded with every entry: its personal values are decrypted as it loads.
    data_key: Mapped[ProfileDataKey | None] = relationship(
        primaryjoin="foreign(UserAudit.user_id) == ProfileDataKey.user_id",
        lazy="joined",
        viewonly=True,
    )

    __table_args__ = (
        CheckConstraint(
            "operation in ('create', 'update', 'delete', 'restore', 'erase')",
            name="operation_known",
        ),
        CheckConstraint("channel in ('web', 'api', 'cli', 'database')", name="channel_known"),
        CheckConstraint("octet_length(seal) = 32", name="seal_hmac_sha256"),
        CheckConstraint(
            "(operation = 'create') = (previous_data is null)", name="previous_data_iff_not_create"
        ),
        # The timeline's keyset orders: newest first, optionally per user or operation.
        Index("ix_user_audit_timestamp_id", "timestamp", "id"),
        Index("ix_user_audit_user_id_timestamp_id", "user_id", "timestamp", "id"),
        # The safety net's look-up, at COMMIT, of the entry of a row change.
        Index("ix_user_audit_user_id_version", "user_id", "version"),
        Index("ix_user_audit_operation_timestamp_id", "operation", "timestamp", "id"),
        Index("ix_user_audit_actor_id_timestamp_id", "actor_id", "timestamp", "id"),
        Index(
            "ix_user_audit_unattributed_timestamp_id",
            "timestamp",
            "id",
            postgresql_where=text("unattributed"),
        ),
        # Actors without an account (cli:<user>) are filtered by label.
        Index(
            "ix_user_audit_lower_actor_label_timestamp_id",
            text("lower(actor_label)"),
            "timestamp",
            "id",
            postgresql_where=text("actor_label IS NOT NULL"),
        ),
        Index("ix_user_audit_changed_fields", "changed_fields", postgresql_using="gin"),
        # "What else did that request change?": a profile's history links here.
        Index(
            "ix_user_audit_request_id_timestamp_id",
            "request_id",
            "timestamp",
            "id",
            postgresql_where=text("request_id IS NOT NULL"),
        ),
    )

    # The token's name and creator read as they do on a row of the entries'
    # columns joined with its token (exports, the API's timeline).
    @property
    def token_name(self) -> str | None:
        return self.token.name if self.token is not None else None

    @property
    def token_created_by_id(self) -> int | None:
        return self.token.created_by_id if self.token is not None else None

    @property
    def token_created_by(self) -> str | None:
        return self.token.created_by_label if self.token is not None else None

    def __repr__(self) -> str:
        return f"<UserAudit {self.id} {self.operation} user={self.user_id} v{self.version}>"


class Staff(UserMixin, db.Model):
    """A person who signs in: support staff, auditors and admins."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __mapper_args__: dict[str, Any] = {"eager_defaults": True}  # noqa: RUF012
    __table_args__ = (
        CheckConstraint("role in ('admin', 'support', 'auditor')", name="role_known"),
        Index("uq_staff_lower_username", text("lower(username)"), unique=True),
    )

    @property
    def is_active(self) -> bool:  # read by Flask-Login
        return bool(self.active)

    def __repr__(self) -> str:
        return f"<Staff {self.id} {self.username} {self.role}>"


#: Why a dashboard session ended (``StaffSession.end_reason``).
SESSION_END_REASONS: tuple[str, ...] = (
    "signed_out",
    "idle",
    "max_age",
    "password_changed",
    "role_changed",
    "deactivated",
)


class StaffSession(db.Model):
    """One dashboard sign-in, kept on the server so that it can be ended there.

    The browser's signed cookie holds a random token; only its SHA-256 is kept
    here. A session is open while ``ended_at`` is unset and neither its idle
    nor its absolute lifetime has passed (``services.staff_sessions``).
    """

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Written at most once a minute, not on every request.
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    staff: Mapped[Staff] = relationship(lazy="joined")

    __table_args__ = (
        CheckConstraint(
            "end_reason in ('signed_out', 'idle', 'max_age', 'password_changed', "
            "'role_changed', 'deactivated')",
            name="end_reason_known",
        ),
        CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="ended_with_reason"),
        # Ending every session of an account (password, role, deactivation).
        Index(
            "ix_staff_sessions_staff_id_open", "staff_id", postgresql_where=text("ended_at IS NULL")
        ),
    )

    def __repr__(self) -> str:
        return f"<StaffSession {self.id} staff={self.staff_id}>"


#: What became of a sign-in attempt (``SignInAttempt.outcome``).
ATTEMPT_OUTCOMES: tuple[str, ...] = ("pending", "failed", "succeeded", "cleared")


class SignInAttempt(db.Model):
    """A password check the sign-in throttle let through (``services.sign_in_throttle``).

    Kept while it counts (the failure window) and deleted after. ``pending``
    (being checked) and ``failed`` count against the account, the address and
    the pair; a success marks the pair's earlier failures ``cleared``.
    """

    __tablename__ = "sign_in_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The username as typed, lower-cased, whether or not such an account exists.
    account_key: Mapped[str] = mapped_column(String(64))
    # Empty when the address is unknown (a command run on the server).
    remote_addr: Mapped[str] = mapped_column(String(64))
    # The database's clock, the same for every app server.
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint(
            "outcome in ('pending', 'failed', 'succeeded', 'cleared')", name="outcome_known"
        ),
        Index("ix_sign_in_attempts_account_key_attempted_at", "account_key", "attempted_at"),
        Index("ix_sign_in_attempts_remote_addr_attempted_at", "remote_addr", "attempted_at"),
        # Deleting the attempts that no longer count.
        Index("ix_sign_in_attempts_attempted_at", "attempted_at"),
    )


class ApiToken(db.Model):
    """A bearer token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    staff_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, enough to recognise a token in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who created it (an admin may create a token owned by another account);
    # the label is copied like an audit entry's actor label. Unknown (null)
    # for tokens created before this was recorded.
    created_by_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("staff.id", ondelete="RESTRICT")
    )
    created_by_label: Mapped[str | None] = mapped_column(String(100))

    staff: Mapped[Staff] = relationship(lazy="joined", foreign_keys=[staff_id])

    __mapper_args__: dict[str, Any] = {"eager_defaults": True}  # noqa: RUF012
    __table_args__ = (
        Index("ix_api_tokens_staff_id", "staff_id"),
        # Names tell an owner's tokens apart on audit entries, so they stay
        # taken after a token is revoked or expires.
        Index("uq_api_tokens_staff_id_lower_name", "staff_id", text("lower(name)"), unique=True),
    )


class SecurityEvent(db.Model):
    """Sign-ins, account and token changes, refusals. Rows are only ever inserted."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    event: Mapped[str] = mapped_column(String(40))
    # The account the event is about (the one signing in, created, revoked...).
    staff_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("staff.id", ondelete="RESTRICT")
    )
    # The username given or affected, kept as text: failed sign-ins name
    # accounts that may not exist.
    username: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(100))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    client_request_id: Mapped[str | None] = mapped_column(String(128))
    # Set on the first event of a kind that can be repeated at will (refused
    # tokens...): its repeats in the same window only count up there.
    repeat_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("security_event_repeats.id", ondelete="RESTRICT"), unique=True
    )

    __table_args__ = (
        Index("ix_security_events_timestamp_id", "timestamp", "id"),
        # Rate limiting counts recent failures per account and per address.
        Index("ix_security_events_event_username", "event", text("lower(username)"), "timestamp"),
        Index("ix_security_events_event_remote_addr", "event", "remote_addr", "timestamp"),
        # The security events page's filters, each in keyset order.
        Index("ix_security_events_event_timestamp_id", "event", "timestamp", "id"),
        Index(
            "ix_security_events_lower_username_timestamp_id",
            text("lower(username)"),
            "timestamp",
            "id",
        ),
        Index("ix_security_events_remote_addr_timestamp_id", "remote_addr", "timestamp", "id"),
    )


class SecurityEventRepeat(db.Model):
    """How often one kind of event came from one address (about one account) in one window.

    Only the first occurrence is a ``security_events`` row; the others add to
    ``count`` and move ``last_seen``. A trigger lets the counters only go up.
    """

    __tablename__ = "security_event_repeats"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    remote_addr: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("staff.id", ondelete="RESTRICT")
    )
    # The few details that tell repeats apart (why a token was refused...),
    # taken only from details with a handful of possible values.
    variant: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("count >= 1", name="count_positive"),
        Index(
            "uq_security_event_repeats_key",
            "event",
            "remote_addr",
            "staff_id",
            "variant",
            "window_start",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )


class AuditChainLink(db.Model):
    """One link of the keyed hash chain: entry ``entry_id`` is number ``seq``.

    ``hash`` is HMAC-SHA-256 (key from configuration) over the previous link's
    hash and the entry's canonical encoding (``webapp.audit.chain``).
    """

    __tablename__ = "audit_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("user_audit.id", ondelete="RESTRICT"), unique=True
    )
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    # How the link hashed its entry: 2 its seal's digest, 1 (links written
    # before entries carried seals) its canonical bytes.
    encoding: Mapped[int] = mapped_column(SmallInteger)
    linked_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )

    __table_args__ = (
        CheckConstraint("seq > 0", name="seq_positive"),
        CheckConstraint("octet_length(hash) = 32", name="hash_sha256"),
        CheckConstraint("encoding in (1, 2)", name="encoding_known"),
    )


class AuditChainHead(db.Model):
    """The newest link; its single row is locked by every append."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class AuditChainPending(db.Model):
    """An entry waiting to be linked into the chain (every INSERT queues its entries)."""

    __tablename__ = "audit_chain_pending"

    entry_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("user_audit.id", ondelete="RESTRICT"),
        primary_key=True,
        autoincrement=False,
    )
    queued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )


class AuditVerification(db.Model):
    """The outcome of one ``flask audit verify`` run. Rows are only ever inserted."""

    __tablename__ = "audit_verifications"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    entries_checked: Mapped[int] = mapped_column(BigInteger)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    pending_entries: Mapped[int] = mapped_column(BigInteger)
    drifted_profiles: Mapped[int] = mapped_column(BigInteger)
    # Set when the run was checked against a saved checkpoint.
    checkpoint_seq: Mapped[int | None] = mapped_column(BigInteger)
    first_bad_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(Text)
    verified_by: Mapped[str] = mapped_column(String(100))
    # HMAC of the result (services.audit_integrity); a row without a valid
    # one was not written by the application and is ignored.
    seal: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_audit_verifications_finished_at", "finished_at"),)
