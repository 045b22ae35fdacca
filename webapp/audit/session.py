"""The application's session class: closes the ORM write paths that skip flush events."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import inspect

from webapp.audit.errors import AuditBypassError


def is_audited(target: Any) -> bool:
    """Whether ``target`` (a mapped class, mapper or instance) has its changes audited."""
    inspected = inspect(target, raiseerr=False)
    mapper = getattr(inspected, "mapper", None)
    return mapper is not None and bool(getattr(mapper.class_, "__audited__", False))


class AuditedSession(FlaskSession):
    """Refuses the legacy bulk methods for audited models.

    ``bulk_save_objects`` and the ``bulk_*_mappings`` methods write rows without
    ``before_flush`` or ``do_orm_execute`` ever seeing them, so for audited
    models they are refused outright instead of silently leaving no trace.
    """

    @property
    def audit_chain_key(self) -> bytes:
        """The key of the audit hash chain; from configuration, never the database."""
        return current_app.config["AUDIT_CHAIN_KEY"].encode()

    def _refuse_if_audited(self, mapper: Any, method: str) -> None:
        if is_audited(mapper):
            raise AuditBypassError(
                f"Session.{method}() writes {inspect(mapper).class_.__name__} rows without "
                "an audit entry; use the service functions instead."
            )

    def bulk_save_objects(self, objects: Any, *args: Any, **kwargs: Any) -> None:
        objects = list(objects)
        for obj in objects:
            self._refuse_if_audited(type(obj), "bulk_save_objects")
        super().bulk_save_objects(objects, *args, **kwargs)

    def bulk_insert_mappings(self, mapper: Any, *args: Any, **kwargs: Any) -> None:
        self._refuse_if_audited(mapper, "bulk_insert_mappings")
        super().bulk_insert_mappings(mapper, *args, **kwargs)

    def bulk_update_mappings(self, mapper: Any, *args: Any, **kwargs: Any) -> None:
        self._refuse_if_audited(mapper, "bulk_update_mappings")
        super().bulk_update_mappings(mapper, *args, **kwargs)
