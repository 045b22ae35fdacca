"""Profiles for support staff: find, create, edit, soft-delete, restore, history.

Every page works as plain HTML forms and links. htmx requests get the piece
of the page they replace (a row, the edit form, the search results), cut
from the same templates, so both ways show the same markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms import HiddenField, StringField, TextAreaField

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.auth.access import can, requires
from webapp.auth.permissions import HISTORY_READ, PROFILES_READ, PROFILES_WRITE
from webapp.models import User, UserAudit
from webapp.services import audit_log, users
from webapp.services.errors import (
    AlreadyDeleted,
    DuplicateEmail,
    NotDeleted,
    ServiceError,
    StaleVersion,
    ValidationFailed,
)
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
class Refusal:
    """Why a delete or restore did not happen, in plain words.

    ``holder`` is the active profile that has the email a restore needs, when
    the person may open it: the message links to it, then gives ``advice``.
    """

    text: str
    holder: User | None = None
    advice: str | None = None


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


def _row(
    user: User,
    *,
    status: int = 200,
    row_error: Refusal | None = None,
    announce: str | None = None,
) -> Response:
    """One row of the list, as it is now (after a save, delete or restore).

    ``announce`` is the news a screen reader hears (the row itself changes
    silently): "Saved", "Deleted"...
    """
    # The row replaces whatever had focus in it; its first action takes over.
    response = render_page(
        "profiles/list.html",
        "row",
        status=status,
        user=user,
        row_error=row_error,
        focus_row=wants_fragment(),
    )
    if announce is not None:
        # static/app.js reads it out through the page's live region.
        response.headers["HX-Trigger"] = json.dumps({"announce": announce})
    return response


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
        _name_the_holder(form, error)
        return _create_form(form, status=error.status, message=message)
    if wants_fragment():
        return _row(user, status=201, announce="Saved")
    flash(f"Profile of {user.name} created.", "success")
    flash("profile-new", "draft-saved")
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
        _name_the_holder(form, error)
        return _edit_form(user, form, status=error.status, message=message)
    if wants_fragment():
        return _row(saved, announce="Saved")
    flash(f"Profile of {saved.name} saved.", "success")
    flash(f"profile-{saved.id}-edit", "draft-saved")
    return redirect(url_for("web.user_detail", user_id=saved.id))


def _name_the_holder(form: ProfileForm, error: ServiceError) -> None:
    """Say which profile has the email, with a link, when the person may open it."""
    holder = _visible_holder(error)
    if holder is None:
        return
    link = Markup('<a href="{}">{}</a> ({})').format(
        url_for("web.user_detail", user_id=holder.id), holder.name, f"#{holder.id}"
    )
    form.email.errors = [Markup("is already used by the active profile {}").format(link)]


def _visible_holder(error: ServiceError) -> User | None:
    if not isinstance(error, DuplicateEmail) or error.holder_id is None:
        return None
    if not can(PROFILES_READ):
        return None
    return users.get_user(error.holder_id)


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
    """Ask before deleting, with a reason: a page, or in the profile's row for htmx."""
    return _confirm_form("delete", users.get_user(user_id))


@bp.get("/users/<int:user_id>/restore")
@requires(PROFILES_WRITE)
def user_restore_confirm(user_id: int) -> Response:
    """Ask before restoring, with a reason: a page, or in the profile's row for htmx."""
    return _confirm_form("restore", users.get_user(user_id))


def _confirm_form(
    action: str,
    user: User,
    *,
    status: int = 200,
    message: str | None = None,
    reason: str | None = None,
    expected_version: str | None = None,
) -> Response:
    return render_page(
        f"profiles/{action}.html",
        "confirm_row",
        status=status,
        user=user,
        message=message,
        reason=reason,
        expected_version=expected_version or str(user.version),
        fragment=wants_fragment(),
    )


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
    action = "delete" if done == "deleted" else "restore"
    try:
        changed = change(
            user_id,
            expected_version=_expected_version(request.form.get("expected_version")),
            reason=request.form.get("reason"),
        )
    except ValidationFailed as error:
        # A reason too long, a form without its version: the same question
        # again, with what was typed.
        return _confirm_form(
            action,
            user,
            status=error.status,
            message=error.detail,
            reason=request.form.get("reason"),
            expected_version=request.form.get("expected_version"),
        )
    except ServiceError as error:
        refusal = _explain(action, user, error)
        current = users.get_user(user_id)
        if wants_fragment():
            return _row(current, status=error.status, row_error=refusal)
        return _detail_page(current, status=error.status, refusal=refusal)
    if wants_fragment():
        return _row(changed, announce=done.capitalize())
    flash(f"Profile of {changed.name} {done}.", "success")
    return redirect(url_for("web.user_detail", user_id=changed.id))


def _explain(action: str, user: User, error: ServiceError) -> Refusal:
    """What happened instead of the delete or restore, for the person who asked."""
    verb = "deleted" if action == "delete" else "restored"
    if isinstance(error, StaleVersion):
        return Refusal(
            f"Not {verb}: someone changed this profile after you opened the page. "
            f"It is shown as it is now; {action} it again if you still mean to."
        )
    if isinstance(error, AlreadyDeleted):
        return Refusal("Nothing to delete: someone else deleted this profile already.")
    if isinstance(error, NotDeleted):
        return Refusal("Nothing to restore: this profile is not deleted (any more).")
    if isinstance(error, DuplicateEmail):
        holder = _visible_holder(error)
        taken = f"Not restored: {user.email} is now used by another active profile"
        if holder is None:
            return Refusal(f"{taken}. Change that profile's email first, then restore this one.")
        return Refusal(
            f"{taken}:", holder, "Change that profile's email, or delete it, then restore this one."
        )
    return Refusal(f"Not {verb}: {error.detail}")


# --- the profile page and its history --------------------------------------------


@bp.get("/users/<int:user_id>")
@requires(PROFILES_READ)
def user_detail(user_id: int) -> Response:
    """A profile's current data and, for roles that may read it, its history."""
    return _detail_page(users.get_user(user_id))


def _detail_page(user: User, *, status: int = 200, refusal: Refusal | None = None) -> Response:
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
        refusal=refusal,
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
