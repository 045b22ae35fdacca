"""How a refused service call is shown on a page: where its message goes.

Its status is the error's own (``ServiceError.status``), the same as the JSON API's.
"""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm

from webapp.services.errors import ServiceError


def show_in_form(form: FlaskForm, error: ServiceError) -> str | None:
    """Attach the error's field messages to ``form``; return what fits no field.

    The returned text is shown as a message above the form.
    """
    placed = False
    for name, messages in error.errors.items():
        field = getattr(form, name, None)
        if field is None or not hasattr(field, "errors"):
            continue
        # WTForms keeps errors as a tuple until the form is validated.
        field.errors = [*field.errors, *messages]
        placed = True
    return None if placed else error.detail


def form_passes(form: FlaskForm, **rules: Callable[[object], object]) -> bool:
    """The form's own checks, then each field through the service's own rule,
    so every problem shows at once.

    A service stops at the first bad field; a person filling in a form wants
    to hear about all of them. Fields that already failed the form's own
    checks are left alone. Returns whether everything passed.
    """
    passed = form.validate()
    for name, rule in rules.items():
        field = getattr(form, name)
        if field.errors:
            continue
        try:
            rule(field.data)
        except ServiceError as error:
            show_in_form(form, error)
            passed = False
    return passed
