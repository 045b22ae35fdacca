"""Entry seals, linking after COMMIT, and a safety net checked at COMMIT.

- ``user_audit.seal``: HMAC of the entry's canonical bytes, written by the
  application in the entry's own INSERT. Entries the safety net writes have
  none and stay unattributed.
- Every INSERT into ``user_audit`` queues its entries in
  ``audit_chain_pending`` (a statement trigger), so nothing that writes
  entries can keep them out of the chain; ``queued_at`` dates the queue row,
  ``audit_chain.linked_at`` the link, and ``audit_chain.encoding`` says how the
  link hashed its entry (1: links written before this revision).
- The safety net becomes a deferred constraint trigger: at COMMIT it looks for
  the entry of every row change of ``users`` in the transaction and writes an
  unattributed one where there is none. Saves no longer announce themselves
  with a ``set_config`` statement, and the settings a session may set
  (``profile_audit.actor``, ``application_name``) appear only as untrusted
  detail of such an entry, never as its actor.
- ``audit_verifications.seal``: results the application sealed; others are
  ignored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


SAFETY_NET_AT_COMMIT = """
CREATE OR REPLACE FUNCTION users_audit_safety_net() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous jsonb;
    current jsonb := profile_snapshot(NEW);
    fields text[];
    operation text;
    claims text;
BEGIN
    -- Deferred to COMMIT: the entry a save wrote for this row change is there
    -- by now. Only a sealed entry of this very transaction counts (a forged
    -- seal that silences this check is named by verification).
    IF EXISTS (
        SELECT 1 FROM user_audit a
        WHERE a.user_id = NEW.id AND a.version = NEW.version AND a.new_data = current
          AND a.seal IS NOT NULL AND a.xmin = pg_current_xact_id()::xid
    ) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        operation := 'create';
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE current -> f <> 'null'::jsonb);
    ELSE
        previous := profile_snapshot(OLD);
        IF previous = current THEN
            RETURN NULL;  -- nothing the audit tracks has changed
        END IF;
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE previous -> f IS DISTINCT FROM current -> f);
        operation := CASE
            WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete'
            WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restore'
            ELSE 'update'
        END;
    END IF;
    -- What the session says about itself is kept, but only as an untrusted
    -- claim: any client can set these.
    claims := concat_ws('; ',
        'untrusted',
        'actor=' || nullif(current_setting('profile_audit.actor', true), ''),
        'application=' || nullif(current_setting('application_name', true), ''));
    INSERT INTO user_audit
        (user_id, operation, previous_data, new_data, changed_fields, version,
         actor_label, channel, channel_detail, remote_addr, unattributed)
    VALUES (
        NEW.id, operation, previous, current, fields, NEW.version,
        left('db:' || session_user, 100),
        'database',
        CASE WHEN claims = 'untrusted' THEN NULL ELSE left(claims, 100) END,
        host(inet_client_addr()),
        true
    );
    RETURN NULL;
END
$$
"""

QUEUE_FOR_LINKING = """
CREATE FUNCTION queue_audit_entries_for_linking() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_chain_pending (entry_id) SELECT id FROM inserted_entries;
    RETURN NULL;
END
$$
"""


def upgrade():
    op.add_column("user_audit", sa.Column("seal", sa.LargeBinary(), nullable=True))
    op.create_check_constraint("seal_hmac_sha256", "user_audit", "octet_length(seal) = 32")
    # The safety net's look-up of a change's entry at COMMIT.
    op.create_index("ix_user_audit_user_id_version", "user_audit", ["user_id", "version"])

    op.add_column(
        "audit_chain",
        sa.Column("encoding", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
    )
    op.alter_column("audit_chain", "encoding", server_default=None)
    op.create_check_constraint("encoding_known", "audit_chain", "encoding in (1, 2)")
    op.add_column(
        "audit_chain",
        sa.Column(
            "linked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=True,
        ),
    )
    op.add_column(
        "audit_chain_pending",
        sa.Column(
            "queued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
    )
    op.add_column("audit_verifications", sa.Column("seal", sa.LargeBinary(), nullable=True))

    op.execute(QUEUE_FOR_LINKING)
    op.execute(
        "CREATE TRIGGER user_audit_queue_for_linking AFTER INSERT ON user_audit "
        "REFERENCING NEW TABLE AS inserted_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION queue_audit_entries_for_linking()"
    )
    op.execute(SAFETY_NET_AT_COMMIT)
    op.execute("DROP TRIGGER users_audit_safety_net ON users")
    op.execute(
        "CREATE CONSTRAINT TRIGGER users_audit_safety_net AFTER INSERT OR UPDATE ON users "
        "DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION users_audit_safety_net()"
    )


def _revision_0006():
    # Module names that start with a digit cannot be imported by name.
    path = Path(__file__).with_name("0006_audit_hash_chain.py")
    spec = importlib.util.spec_from_file_location("revision_0006", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade():
    op.execute("DROP TRIGGER users_audit_safety_net ON users")
    op.execute(_revision_0006().SAFETY_NET_WITH_ATTRIBUTION)
    op.execute(
        "CREATE TRIGGER users_audit_safety_net AFTER INSERT OR UPDATE ON users "
        "FOR EACH ROW EXECUTE FUNCTION users_audit_safety_net()"
    )
    op.execute("DROP TRIGGER user_audit_queue_for_linking ON user_audit")
    op.execute("DROP FUNCTION queue_audit_entries_for_linking()")
    op.drop_column("audit_verifications", "seal")
    op.drop_column("audit_chain_pending", "queued_at")
    op.drop_column("audit_chain", "linked_at")
    op.drop_constraint(op.f("ck_audit_chain_encoding_known"), "audit_chain", type_="check")
    op.drop_column("audit_chain", "encoding")
    op.drop_index("ix_user_audit_user_id_version", table_name="user_audit")
    op.drop_constraint(op.f("ck_user_audit_seal_hmac_sha256"), "user_audit", type_="check")
    op.drop_column("user_audit", "seal")
