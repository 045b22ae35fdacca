"""Make the audit trail and the security events append-only in the database.

UPDATE and DELETE of their rows, and TRUNCATE of the tables, are refused by
triggers, whoever runs them (psql included). TRUNCATE fires no row triggers,
hence the statement-level trigger. The table owner or a superuser can still
disable triggers; the chained hashes of a later migration detect that.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("user_audit", "security_events")


def upgrade():
    op.execute(
        """
        CREATE FUNCTION refuse_append_only_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Audit records are only ever inserted.';
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()"
        )


def downgrade():
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute("DROP FUNCTION refuse_append_only_change()")
