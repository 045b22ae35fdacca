"""Admin pages: staff accounts and API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from webapp.auth.access import current_staff, requires
from webapp.auth.permissions import STAFF_MANAGE
from webapp.auth.web_session import start_session
from webapp.models import ApiToken
from webapp.services import api_tokens
from webapp.services import staff as staff_service
from webapp.services.errors import Conflict, ServiceError
from webapp.web import bp
from webapp.web.forms import CreateStaffForm, CreateTokenForm, PasswordForm, RoleForm
from webapp.web.refusals import form_passes, show_in_form
from webapp.web.shown_once import keep_for_next_page, take

Page = tuple[str, int]


@dataclass
class RowRefusal:
    """A refused change to one account, shown inside that account's row."""

    staff_id: int
    form: FlaskForm
    message: str | None


# --- staff accounts ---------------------------------------------------------


def _staff_page(
    status: int = 200,
    *,
    create_form: CreateStaffForm | None = None,
    refusal: RowRefusal | None = None,
    message: str | None = None,
) -> Page:
    accounts = staff_service.list_staff()
    role_forms = {account.id: RoleForm(formdata=None, role=account.role) for account in accounts}
    password_forms = {account.id: PasswordForm(formdata=None) for account in accounts}
    if refusal is not None:
        forms = role_forms if isinstance(refusal.form, RoleForm) else password_forms
        forms[refusal.staff_id] = refusal.form  # type: ignore[assignment]
    html = render_template(
        "admin/staff.html",
        accounts=accounts,
        create_form=create_form or CreateStaffForm(formdata=None),
        role_forms=role_forms,
        password_forms=password_forms,
        refusal=refusal,
        message=message,
        me=current_staff(),
    )
    return html, status


@bp.get("/admin/staff")
@requires(STAFF_MANAGE)
def staff_list() -> Page:
    """Every account, with forms to create one and to change each."""
    return _staff_page()


@bp.post("/admin/staff")
@requires(STAFF_MANAGE)
def staff_create() -> Page | Response:
    """Create an account; every problem with the form is shown next to its field."""
    form = CreateStaffForm()
    if not form_passes(
        form, username=staff_service.clean_username, password=staff_service.clean_password
    ):
        return _staff_page(400, create_form=form)
    try:
        account = staff_service.create_staff(form.username.data, form.password.data, form.role.data)
    except ServiceError as error:
        message = show_in_form(form, error)
        return _staff_page(error.status, create_form=form, message=message)
    flash(f"Account {account.username} created with the role {account.role}.", "success")
    return redirect(url_for("web.staff_list"))


@bp.post("/admin/staff/<int:staff_id>/role")
@requires(STAFF_MANAGE)
def staff_set_role(staff_id: int) -> Page | Response:
    """Change another account's role; its sessions end, to start again under the new role."""
    form = RoleForm()
    # An unknown account is a 404 whatever the form says.
    old_role = staff_service.get_staff(staff_id).role
    try:
        _refuse_own_account(staff_id, "change your own role")
        if not form.validate():
            return _staff_page(400, refusal=RowRefusal(staff_id, form, None))
        account = staff_service.set_role(staff_id, form.role.data)
    except ServiceError as error:
        message = show_in_form(form, error)
        return _staff_page(error.status, refusal=RowRefusal(staff_id, form, message))
    if account.role == old_role:
        flash(f"{account.username} already is {account.role}.", "info")
    else:
        flash(f"{account.username} is now {account.role}; its sessions have ended.", "success")
    return redirect(url_for("web.staff_list"))


@bp.get("/admin/staff/<int:staff_id>/deactivate")
@requires(STAFF_MANAGE)
def staff_deactivate_confirm(staff_id: int) -> Page:
    """Ask before deactivating: what stops working, and that it can be undone."""
    account = staff_service.get_staff(staff_id)
    return render_template("admin/confirm.html", action="deactivate", account=account), 200


@bp.post("/admin/staff/<int:staff_id>/deactivate")
@requires(STAFF_MANAGE)
def staff_deactivate(staff_id: int) -> Page | Response:
    """Deactivate another account: its sessions and tokens stop working at once."""
    staff_service.get_staff(staff_id)  # an unknown account is a 404, even one's own id
    try:
        _refuse_own_account(staff_id, "deactivate your own account")
        account = staff_service.deactivate(staff_id)
    except ServiceError as error:
        return _staff_page(error.status, message=error.detail)
    flash(
        f"{account.username} is deactivated: its sessions and API tokens no longer work.",
        "success",
    )
    return redirect(url_for("web.staff_list"))


@bp.post("/admin/staff/<int:staff_id>/reactivate")
@requires(STAFF_MANAGE)
def staff_reactivate(staff_id: int) -> Response:
    """Let a deactivated account sign in again (recorded as a security event)."""
    if staff_service.get_staff(staff_id).active:
        flash(f"{staff_service.get_staff(staff_id).username} is already active.", "info")
        return redirect(url_for("web.staff_list"))
    account = staff_service.reactivate(staff_id)
    live_tokens = sum(1 for token in api_tokens.list_tokens(account.id) if token.revoked_at is None)
    tokens = (
        f" Its {live_tokens} API token{'s' if live_tokens != 1 else ''} that "
        f"{'were' if live_tokens != 1 else 'was'} not revoked work again: revoke any "
        "no longer needed."
        if live_tokens
        else ""
    )
    flash(f"{account.username} is active again and can sign in.{tokens}", "success")
    return redirect(url_for("web.staff_list"))


@bp.post("/admin/staff/<int:staff_id>/password")
@requires(STAFF_MANAGE)
def staff_set_password(staff_id: int) -> Page | Response:
    """Set a new password, which ends every session of that account."""
    form = PasswordForm()
    staff_service.get_staff(staff_id)  # an unknown account is a 404 whatever the form says
    if not form.validate():
        return _staff_page(400, refusal=RowRefusal(staff_id, form, None))
    try:
        account = staff_service.set_password(staff_id, form.password.data)
    except ServiceError as error:
        message = show_in_form(form, error)
        return _staff_page(error.status, refusal=RowRefusal(staff_id, form, message))
    me = current_staff()
    if me is not None and me.id == account.id:
        # The change ended every session of the account, this one included;
        # the admin who made it stays signed in on a fresh session.
        start_session(account)
        flash("Your password was changed; your other sessions have ended.", "success")
    else:
        flash(f"Password of {account.username} changed; its sessions have ended.", "success")
    return redirect(url_for("web.staff_list"))


def _refuse_own_account(staff_id: int, what: str) -> None:
    # An admin locking themselves out (or demoting the last admin) cannot be
    # undone from the dashboard; another admin has to do it.
    me = current_staff()
    if me is not None and me.id == staff_id:
        raise Conflict(f"You cannot {what}; ask another admin.")


# --- API tokens ---------------------------------------------------------------


def _token_form(formdata: bool = True) -> CreateTokenForm:
    form = CreateTokenForm() if formdata else CreateTokenForm(formdata=None)
    form.owner.choices = [
        SelectChoice(str(account.id), f"{account.username} ({account.role})")
        for account in staff_service.list_staff()
        if account.active
    ]
    return form


def _tokens_page(
    status: int = 200,
    *,
    form: CreateTokenForm | None = None,
    message: str | None = None,
    new_token: ApiToken | None = None,
    secret: str | None = None,
) -> Page:
    tokens = api_tokens.list_tokens()
    html = render_template(
        "admin/tokens.html",
        tokens=[(token, api_tokens.token_status(token)) for token in tokens],
        form=form or _token_form(formdata=False),
        message=message,
        new_token=new_token,
        secret=secret,
    )
    return html, status


@bp.get("/admin/tokens")
@requires(STAFF_MANAGE)
def token_list() -> Page:
    """Every API token (never the tokens themselves) and a form to create one.

    Right after a token was created, this page shows it, once.
    """
    shown = take()
    if shown is None:
        return _tokens_page()
    token_id, secret = shown
    return _tokens_page(new_token=api_tokens.get_token(token_id), secret=secret)


@bp.post("/admin/tokens")
@requires(STAFF_MANAGE)
def token_create() -> Page | Response:
    """Create a token and show it this once; it is stored only as a hash."""
    form = _token_form()
    if not form_passes(
        form, name=api_tokens.clean_token_name, expires_in_days=api_tokens.clean_expiry_days
    ):
        return _tokens_page(400, form=form)
    try:
        owner = staff_service.get_staff(form.owner.data)
        token, secret = api_tokens.create_token(
            owner, form.name.data, expires_in_days=form.expires_in_days.data
        )
    except ServiceError as error:
        message = show_in_form(form, error)
        return _tokens_page(error.status, form=form, message=message)
    # Post/redirect/get: reloading the page that shows the token must not
    # create another. The token waits, sealed, for that page only.
    keep_for_next_page(token.id, secret)
    return redirect(url_for("web.token_list"), 303)


@bp.get("/admin/tokens/<int:token_id>/revoke")
@requires(STAFF_MANAGE)
def token_revoke_confirm(token_id: int) -> Page:
    """Ask before revoking: scripts using the token stop working at once."""
    token = api_tokens.get_token(token_id)
    return render_template("admin/confirm.html", action="revoke", token=token), 200


@bp.post("/admin/tokens/<int:token_id>/revoke")
@requires(STAFF_MANAGE)
def token_revoke(token_id: int) -> Response:
    """Revoke a token; scripts using it get 401 from the next request on."""
    token = api_tokens.revoke_token(token_id)
    flash(f"Token {token.name} ({token.prefix}…) of {token.staff.username} is revoked.", "success")
    return redirect(url_for("web.token_list"))
