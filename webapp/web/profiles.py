"""Profiles for support staff: find, create, edit, soft-delete, restore, history.

Every page works as plain HTML forms and links. htmx requests get the piece
of the page they replace (a row, the edit form, the search results), cut
from the same templates, so both ways show the same markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import HiddenField, StringField, TextAreaField

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.auth.access import can, requires
from webapp.auth.permissions import HISTORY_READ, PROFILES_READ, PROFILES_WRITE
from webapp.models import User, UserAudit
from webapp.services import audit_log, users
from webapp.services.errors import ServiceError, StaleVersion, ValidationFailed
from webapp.services.pagination import Page
from webapp.typed_text import MAX_INTEGER, parse_whole_number
from webapp.web import bp
from webapp.web.refusals import show_in_form
from webapp.web.rendering import render_page, wants_fragment

PAGE_SIZE = 25
HISTORY_PAGE_SIZE = 50
FIELD_LABELS = {"name": "Name", "email": "Email", "deleted_at": "Deleted at"}


class ProfileForm(FlaskForm):
    """A profile's fields as typed; the services' rules judge them, not this form."""

    class Meta:
        # CSRFProtect already checks every POST; the templates send the token.
        csrf = False

    name = StringField("Name")
    email = StringField("Email")
    reason = TextAreaField("Reason for change (optional)")
    expected_version = HiddenField()


@dataclass(frozen=True)
class Difference:
    """One field of a refused stale edit: as opened, as typed, and as saved now."""

    field: str
    label: str
    opened: str | None
    yours: str
    theirs: str

    @property
    def changed_meanwhile(self) -> bool:
        """Whether the other save changed this field (or, not knowing, whether it differs)."""
        if self.opened is None:
            return self.yours != self.theirs
        return self.opened != self.theirs

    @property
    def edited(self) -> bool:
        """Whether this person changed the field in their form."""
        return self.opened is None or self.yours != self.opened


@dataclass(frozen=True)
class LastChange:
    """The newest history entry that changed one field."""

    field: str
    label: str
    entry: UserAudit | None


# --- the list ------------------------------------------------------------------


@bp.get("/users")
@requires(PROFILES_READ)
def users_list() -> Response:
    """Profiles, searchable by name or email, one keyset page at a time."""
    query = request.args.get("q", "")
    include_deleted = request.args.get("deleted") == "1"
    cursor = request.args.get("cursor") or None
    search_error = None
    status = 200
    try:
        page = users.list_users(
            query=query, include_deleted=include_deleted, limit=PAGE_SIZE, cursor=cursor
        )
    except ValidationFailed as error:
        if "q" not in error.errors:
            raise  # a damaged cursor: the blueprint's error page says so
        page = Page(items=[], next_cursor=None)
        search_error = "Search " + error.errors["q"][0]
        status = 400
    # A "load more" request appends rows; anything else replaces the results.
    block = "more_rows" if cursor and search_error is None else "results"
    return render_page(
        "profiles/list.html",
        block,
        status=status,
        page=page,
        query=query,
        include_deleted=include_deleted,
        cursor=cursor,
        search_error=search_error,
        fragment=wants_fragment(),
        next_url=_list_url(query, include_deleted, page.next_cursor),
    )


def _list_url(query: str, include_deleted: bool, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return url_for(
        "web.users_list",
        q=query or None,
        deleted="1" if include_deleted else None,
        cursor=cursor,
    )


def _row(user: User, *, status: int = 200, row_error: str | None = None) -> Response:
    """One row of the list, as it is now (after a save, delete or restore)."""
    # The row replaces whatever had focus in it; its first action takes over.
    return render_page(
        "profiles/list.html",
        "row",
        status=status,
        user=user,
        row_error=row_error,
        focus_row=wants_fragment(),
    )


@bp.get("/users/<int:user_id>/row")
@requires(PROFILES_READ)
def user_row(user_id: int) -> Response:
    """The row of one profile: what "Cancel" puts back in place of its edit form."""
    user = users.get_user(user_id)
    if not wants_fragment():
        return redirect(url_for("web.user_detail", user_id=user.id))
    return _row(user)


# --- create ----------------------------------------------------------------------


def _create_form(form: ProfileForm, *, status: int = 200, message: str | None = None) -> Response:
    return render_page(
        "profiles/new.html",
        "create_row",
        status=status,
        form=form,
        message=message,
        fragment=wants_fragment(),
    )


@bp.get("/users/new")
@requires(PROFILES_WRITE)
def user_new() -> Response:
    """The form for a new profile: a page, or a row at the top of the list for htmx."""
    return _create_form(ProfileForm(formdata=None))


@bp.post("/users/new")
@requires(PROFILES_WRITE)
def user_create() -> Response:
    """Create a profile; the new row (htmx) or its page (plain form) is the answer."""
    form = ProfileForm()
    try:
        user = users.create_user(_typed_fields(form), reason=form.reason.data)
    except ServiceError as error:
        message = show_in_form(form, error)
        return _create_form(form, status=error.status, message=message)
    if wants_fragment():
        return _row(user, status=201)
    flash(f"Profile of {user.name} created.", "success")
    return redirect(url_for("web.user_detail", user_id=user.id))


# --- edit ------------------------------------------------------------------------


def _edit_form(
    user: User,
    form: ProfileForm,
    *,
    status: int = 200,
    message: str | None = None,
    differences: list[Difference] | None = None,
) -> Response:
    return render_page(
        "profiles/edit.html",
        "edit_row",
        status=status,
        user=user,
        form=form,
        message=message,
        differences=differences,
        fragment=wants_fragment(),
    )


def _fresh_form(user: User) -> ProfileForm:
    return ProfileForm(
        formdata=None, name=user.name, email=user.email, expected_version=str(user.version)
    )


@bp.get("/users/<int:user_id>/edit")
@requires(PROFILES_WRITE)
def user_edit(user_id: int) -> Response:
    """The edit form, opened at the profile's current version."""
    user = users.get_user(user_id)
    return _edit_form(user, _fresh_form(user))


@bp.post("/users/<int:user_id>/edit")
@requires(PROFILES_WRITE)
def user_update(user_id: int) -> Response:
    """Save an edit, unless someone else saved the profile since the form was opened."""
    user = users.get_user(user_id)
    form = ProfileForm()
    try:
        saved = users.update_user(
            user_id,
            _typed_fields(form),
            expected_version=_expected_version(form.expected_version.data),
            reason=form.reason.data,
            partial=False,
        )
    except StaleVersion as error:
        return _stale(form, error)
    except ServiceError as error:
        message = show_in_form(form, error)
        return _edit_form(user, form, status=error.status, message=message)
    if wants_fragment():
        return _row(saved)
    flash(f"Profile of {saved.name} saved.", "success")
    return redirect(url_for("web.user_detail", user_id=saved.id))


def _stale(form: ProfileForm, error: StaleVersion) -> Response:
    """Show what the other save changed, next to what this person typed.

    Fields this person left alone take the current values, so saving again
    applies only their own edits; the form carries the current version, so
    that save is a choice made after seeing both side by side.
    """
    current: User = error.current
    typed = _typed_fields(form)
    opened = _values_at(current, error.expected_version)
    differences = [
        Difference(
            field,
            FIELD_LABELS[field],
            None if opened is None else opened.get(field),
            str(typed[field]),
            getattr(current, field),
        )
        for field in ("name", "email")
    ]
    for difference in differences:
        if not difference.edited:
            getattr(form, difference.field).data = difference.theirs
    form.expected_version.data = str(current.version)
    return _edit_form(current, form, status=409, message=error.detail, differences=differences)


def _values_at(user: User, version: int | None) -> dict[str, Any] | None:
    """The profile's fields as they were at ``version``, from its history."""
    if version is None or not 0 < version < user.version:
        return None
    # Each saved change adds one entry and one version: the newest entries
    # reach back to the one that produced ``version``.
    span = min(user.version - version + 1, HISTORY_PAGE_SIZE)
    for entry in audit_log.user_history(user.id, limit=span).items:
        if entry.version == version:
            return entry.new_data
    return None


def _typed_fields(form: ProfileForm) -> dict[str, object]:
    # A field missing from the post counts as left empty, which the rules refuse.
    return {"name": form.name.data or "", "email": form.email.data or ""}


def _expected_version(raw: object) -> int:
    """The version a form was opened at; without it a save could overwrite blindly."""
    version = parse_whole_number(raw, maximum=MAX_INTEGER) if isinstance(raw, str) else None
    if version is not None:
        return version
    raise ValidationFailed(
        "The form did not say which version of the profile it edits; reload it and try again."
    )


# --- delete and restore ----------------------------------------------------------


@bp.get("/users/<int:user_id>/delete")
@requires(PROFILES_WRITE)
def user_delete_confirm(user_id: int) -> Response:
    """Ask before deleting, for browsers without JavaScript (htmx asks with a dialog)."""
    user = users.get_user(user_id)
    return render_page("profiles/delete.html", user=user)


@bp.post("/users/<int:user_id>/delete")
@requires(PROFILES_WRITE)
def user_delete(user_id: int) -> Response:
    """Soft-delete a profile; its row stays, marked deleted, with a Restore button."""
    return _change_state(user_id, users.delete_user, "deleted")


@bp.post("/users/<int:user_id>/restore")
@requires(PROFILES_WRITE)
def user_restore(user_id: int) -> Response:
    """Undo a soft delete; refused in place when another profile has taken the email."""
    return _change_state(user_id, users.restore_user, "restored")


def _change_state(user_id: int, change: Callable[..., User], done: str) -> Response:
    user = users.get_user(user_id)
    try:
        changed = change(
            user_id,
            expected_version=_expected_version(request.form.get("expected_version")),
            reason=request.form.get("reason"),
        )
    except ServiceError as error:
        if wants_fragment():
            return _row(users.get_user(user_id), status=error.status, row_error=error.detail)
        return _detail_page(user, status=error.status, message=error.detail)
    if wants_fragment():
        return _row(changed)
    flash(f"Profile of {changed.name} {done}.", "success")
    return redirect(url_for("web.user_detail", user_id=changed.id))


# --- the profile page and its history --------------------------------------------


@bp.get("/users/<int:user_id>")
@requires(PROFILES_READ)
def user_detail(user_id: int) -> Response:
    """A profile's current data and, for roles that may read it, its history."""
    return _detail_page(users.get_user(user_id))


def _detail_page(user: User, *, status: int = 200, message: str | None = None) -> Response:
    cursor = request.args.get("before") or None
    history = None
    if can(HISTORY_READ):
        history = audit_log.user_history(user.id, limit=HISTORY_PAGE_SIZE, cursor=cursor)
    older_url = None
    if history is not None and history.next_cursor is not None:
        older_url = url_for("web.user_detail", user_id=user.id, before=history.next_cursor)
    return render_page(
        "profiles/detail.html",
        "history_entries" if cursor else None,
        status=status,
        user=user,
        message=message,
        history=history,
        cursor=cursor,
        older_url=older_url,
        last_changes=_last_changes(history.items) if history is not None else [],
        field_labels=FIELD_LABELS,
        fields=SNAPSHOT_FIELDS,
        fragment=wants_fragment(),
    )


def _last_changes(entries: Sequence[UserAudit]) -> list[LastChange]:
    """For each field, the newest entry (of those shown) that changed it."""
    last: dict[str, UserAudit] = {}
    for entry in entries:  # newest first: the first one seen wins
        for field in entry.changed_fields:
            last.setdefault(field, entry)
    return [LastChange(field, FIELD_LABELS[field], last.get(field)) for field in SNAPSHOT_FIELDS]
