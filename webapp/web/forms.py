"""The dashboard's forms.

They check only what belongs to the page (a filled-in field, a matching
confirmation); the rules for usernames, roles, passwords and tokens live in
the services, which the API shares.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired

from webapp.models import ROLES

ROLE_CHOICES = [SelectChoice(role, role) for role in ROLES]


class SignInForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    next = HiddenField()
    submit = SubmitField("Sign in")


class CreateStaffForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    role = SelectField("Role", choices=ROLE_CHOICES, default="support")
    password = PasswordField("Password", validators=[DataRequired()])
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="does not match the password")],
    )
    submit = SubmitField("Create account")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired()])
    confirm = PasswordField(
        "Repeat new password",
        validators=[InputRequired(), EqualTo("password", message="does not match the password")],
    )
    submit = SubmitField("Set password")


class CreateTokenForm(FlaskForm):
    owner = SelectField("Owner", coerce=int, validate_choice=True)
    name = StringField("Name", validators=[DataRequired()])
    expires_in_days = StringField("Expires in (days)")
    submit = SubmitField("Create token")
