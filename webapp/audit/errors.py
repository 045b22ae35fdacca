"""Errors raised when a write would escape the audit log."""


class AuditBypassError(RuntimeError):
    """A write path that would change audited rows without an audit entry."""


class HardDeleteRefused(AuditBypassError):
    """Audited rows are soft-deleted only; removing them would erase history."""


class UnattributedChangeError(AuditBypassError):
    """A change with no actor: refused rather than recorded as anonymous."""


class ErasedProfileChange(AuditBypassError):
    """A change to a profile whose data key was destroyed: it can hold no new history."""
