"""``flask demo seed``: fake profiles and a history of changes, for demos and benchmarks.

Everything is written through the ORM with the service layer's field rules,
so every profile and every change gets its real audit entry and hash-chain
link, attributed to ``cli:<operating-system user>`` like any other command.
The services commit once per change; here many changes share a transaction
(one flush, hence one entry and one link, per change) so that tens of
thousands of changes take seconds, not minutes.

The same ``--seed`` on an empty database gives the same profiles, changes and
reasons (only the times differ). Seeded data can never be removed again (the
audit trail is append-only), so the command asks for ``--yes`` before adding
to a database that already has profiles, and refuses outright if one of its
emails is used by an active profile.
"""

from __future__ import annotations

import random
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.audit.context import change_context
from webapp.cli.operator_commands import operator_command
from webapp.extensions import db
from webapp.models import User
from webapp.services.profile_rules import clean_profile, clean_reason
from webapp.timestamps import utcnow

#: Profiles or changes per transaction: large enough to amortise the commit,
#: small enough that the chain's head is never locked for long.
BATCH_SIZE = 500
#: Emails checked against the database per query.
_EMAIL_CHECK_BATCH = 1000

# Small built-in lists: enough variety (scripts, diacritics, particles,
# apostrophes) to exercise search, sorting and exports without a dependency.
FIRST_NAMES: tuple[str, ...] = (
    "Aarav", "Ana", "Aoife", "Björn", "Chloé", "Chidi", "Dmitri", "Émile", "Emma", "Fatima",
    "François", "Grégoire", "Håkon", "Inés", "Jürgen", "Kateřina", "Leilani", "Liam",
    "Małgorzata", "Mei", "Mohammed", "Noah", "Nuño", "Oğuz", "Olivia", "Olusegun", "Pål",
    "Priya", "Renée", "Siobhán", "Søren", "Tomás", "Łukasz", "Uxía", "Vũ", "Wojciech",
    "Xóchitl", "Yusuf", "Zdeněk", "Zoë", "Ярослава", "Σοφία", "美咲", "민준",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Ahmed", "Al-Sayed", "Björk", "Chen", "de la Cruz", "Dubois", "Fernández", "García",
    "Hernández", "Ivanova", "Jensen", "Johnson", "Kim", "Kowalski", "Lefèvre", "Łęcka",
    "Müller", "Murphy", "Novák", "Nguyễn", "O'Brien", "Okafor", "Ólafsdóttir", "Østergaard",
    "Papadopoulos", "Rossi", "Schäfer", "Silva", "Singh", "Smith", "Tanaka", "van der Berg",
    "Yılmaz", "Петров", "Παπαδάκη", "佐藤", "김",  # noqa: RUF001 - Turkish dotless i
)  # fmt: skip
# Reserved for examples (RFC 2606): never a real person's address.
DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "post.example.org",
)
_EMAIL_STYLES: tuple[Callable[[str, str], str], ...] = (
    lambda first, last: f"{first}.{last}",
    lambda first, last: f"{first[0]}{last}",
    lambda first, last: f"{first}_{last}",
    lambda first, last: f"{last}.{first}",
    lambda first, last: first,
)

CREATE_REASON = "Demo data (flask demo seed --seed {seed})"
REASONS: dict[str, tuple[str, ...]] = {
    "name": (
        "Name changed after marriage (ticket #{ticket})",
        "Spelling corrected at the customer's request",
        "Legal name change; documents checked (ticket #{ticket})",
        "Customer prefers this form of the name",
    ),
    "email": (
        "Customer moved to a new email provider",
        "Bounced emails: customer confirmed the new address by phone",
        "Work address replaced by a personal one (ticket #{ticket})",
    ),
    "both": (
        "Profile details updated after identity check (ticket #{ticket})",
        "Customer sent new contact details by post",
    ),
    "delete": (
        "Account closure requested by the customer (ticket #{ticket})",
        "Duplicate profile",
        "Erasure request under GDPR art. 17 (ticket #{ticket})",
    ),
    "restore": (
        "Deleted by mistake",
        "Customer reopened the account (ticket #{ticket})",
    ),
}
# Share of each kind of change of an active profile; a deleted profile that is
# picked is restored, so about one profile in twelve is deleted at any time.
_CHANGE_WEIGHTS: dict[str, int] = {"name": 40, "email": 30, "both": 10, "delete": 8}
# Some changes are saved without a reason, as the dashboard allows.
_NO_REASON_SHARE = 0.1

# Letters that Unicode does not decompose into an ASCII base letter.
_ASCII_FOLD = str.maketrans(
    {"ø": "o", "ł": "l", "đ": "d", "ı": "i", "æ": "ae", "œ": "oe", "ß": "ss", "þ": "th"}  # noqa: RUF001
)


@dataclass(frozen=True)
class Change:
    """One planned change of the profile at ``index`` (0-based, in creation order)."""

    index: int
    kind: str  # "name", "email", "both", "delete" or "restore"
    name: str | None
    email: str | None
    reason: str | None


@dataclass
class _Person:
    first: str
    last: str
    number: int
    email: str
    deleted: bool = False

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Plan:
    """Everything a seed run will write, decided before anything is written."""

    profiles: list[tuple[str, str]]
    changes: list[Change]
    create_reason: str

    def emails(self) -> Iterator[str]:
        """Every email the run will give a profile."""
        yield from (email for _, email in self.profiles)
        yield from (change.email for change in self.changes if change.email is not None)


def _slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.lower().translate(_ASCII_FOLD))
    return "".join(char for char in folded if "a" <= char <= "z")


def _email(rng: random.Random, first: str, last: str, number: int) -> str:
    # Names in other scripts have no ASCII spelling here; a generic word stands in.
    first_part, last_part = _slug(first) or "customer", _slug(last) or "client"
    # The number ends the local part and no name part holds a digit, so two
    # profiles (different numbers) can never be given the same address.
    local = rng.choice(_EMAIL_STYLES)(first_part, last_part)
    return f"{local}{number}@{rng.choice(DOMAINS)}"


def _reason(rng: random.Random, kind: str) -> str | None:
    if rng.random() < _NO_REASON_SHARE:
        return None
    return rng.choice(REASONS[kind]).format(ticket=rng.randint(10_000, 99_999))


def _new_name(rng: random.Random, person: _Person) -> tuple[str, str]:
    while True:
        if rng.random() < 0.7:  # most name changes are a new last name
            first, last = person.first, rng.choice(LAST_NAMES)
        else:
            first, last = rng.choice(FIRST_NAMES), person.last
        if (first, last) != (person.first, person.last):
            return first, last


def make_plan(seed: int, users: int, changes: int, *, first_number: int = 1) -> Plan:
    """Profiles and changes for a run; the same arguments always give the same plan.

    Email numbers start at ``first_number`` so that a later run on the same
    database (which passes the highest profile id plus one) never repeats an
    address of an earlier one.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people: list[_Person] = []
    for offset in range(users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        number = first_number + offset
        people.append(_Person(first, last, number, _email(rng, first, last, number)))
    profiles = [(person.name, person.email) for person in people]

    kinds, weights = list(_CHANGE_WEIGHTS), list(_CHANGE_WEIGHTS.values())
    planned: list[Change] = []
    for _ in range(changes):
        index = rng.randrange(users)
        person = people[index]
        kind = "restore" if person.deleted else rng.choices(kinds, weights)[0]
        name = email = None
        if kind in {"name", "both"}:
            person.first, person.last = _new_name(rng, person)
            name = person.name
        if kind in {"email", "both"}:
            new_email = person.email
            while new_email == person.email:
                new_email = _email(rng, person.first, person.last, person.number)
            person.email = email = new_email
        person.deleted = kind == "delete"
        planned.append(Change(index, kind, name, email, _reason(rng, kind)))
    return Plan(profiles, planned, CREATE_REASON.format(seed=seed))


def _batches(items: Sequence[object], size: int) -> Iterator[range]:
    for start in range(0, len(items), size):
        yield range(start, min(start + size, len(items)))


def _taken_emails(emails: Iterable[str]) -> list[str]:
    """Those of ``emails`` that an active profile already uses (case-insensitively)."""
    unique = sorted({email.lower() for email in emails})
    taken: list[str] = []
    for start in range(0, len(unique), _EMAIL_CHECK_BATCH):
        chunk = unique[start : start + _EMAIL_CHECK_BATCH]
        taken.extend(
            db.session.scalars(
                select(func.lower(User.email)).where(
                    func.lower(User.email).in_(chunk), User.deleted_at.is_(None)
                )
            )
        )
    return sorted(taken)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing in pipes and logs."""
    if not sys.stderr.isatty():
        yield lambda steps: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@dataclass(frozen=True)
class SeedResult:
    """What a run wrote, and how long each part took (for benchmarks)."""

    ids: list[int]
    profile_seconds: float
    change_seconds: float


def write_plan(plan: Plan, *, batch_size: int, progress: Callable[[int], None]) -> SeedResult:
    """Write the plan: a transaction per ``batch_size`` profiles or changes."""
    started = time.perf_counter()
    ids: list[int] = []
    for batch in _batches(plan.profiles, batch_size):
        created = []
        for index in batch:
            name, email = plan.profiles[index]
            fields = clean_profile({"name": name, "email": email}, partial=False)
            created.append(User(name=fields["name"], email=fields["email"]))
        db.session.add_all(created)
        # One flush: one multi-row INSERT of the entries and one run of links.
        with change_context(reason=clean_reason(plan.create_reason)):
            db.session.flush()
        ids.extend(user.id for user in created)
        db.session.commit()
        progress(len(batch))

    profiles_done = time.perf_counter()
    for batch in _batches(plan.changes, batch_size):
        changes = [plan.changes[position] for position in batch]
        wanted = {ids[change.index] for change in changes}
        # One query loads (or refreshes, after the last commit) the batch's profiles.
        users = {
            user.id: user for user in db.session.scalars(select(User).where(User.id.in_(wanted)))
        }
        for change in changes:
            user = users[ids[change.index]]
            if change.kind == "delete":
                user.deleted_at = utcnow()
            elif change.kind == "restore":
                user.deleted_at = None
            else:
                values = {"name": change.name, "email": change.email}
                for field, value in clean_profile(
                    {key: value for key, value in values.items() if value is not None},
                    partial=True,
                ).items():
                    setattr(user, field, value)
            # A flush per change: each entry carries its own reason.
            with change_context(reason=clean_reason(change.reason)):
                db.session.flush()
        db.session.commit()
        progress(len(batch))
    return SeedResult(ids, profiles_done - started, time.perf_counter() - profiles_done)


demo_group = AppGroup("demo", help="Fill a database with fake profiles and history.")


@demo_group.command("seed")
# The plan is held in memory (a few hundred bytes a change) so that all of it
# is checked before anything is written; these bounds keep that to a few GB.
@click.option(
    "--users", type=click.IntRange(1, 1_000_000), required=True, help="Profiles to create."
)
@click.option(
    "--changes",
    type=click.IntRange(0, 5_000_000),
    default=0,
    show_default=True,
    help="Changes (edits, deletes, restores) spread over the new profiles.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Make the data reproducible (default: a random seed, printed at the end).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=BATCH_SIZE,
    show_default=True,
    help="Profiles or changes per transaction.",
)
@click.option(
    "--yes",
    is_flag=True,
    help="Add to a database that already has profiles (seeded data can never be removed).",
)
@with_appcontext
@operator_command
def seed_command(users: int, changes: int, seed: int | None, batch_size: int, yes: bool) -> None:
    """Create USERS fake profiles and CHANGES changes of them, each audited and chained.

    Only the new profiles are changed. Prints one summary line; a progress bar
    on a terminal.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    existing, highest_id = db.session.execute(
        select(func.count(), func.coalesce(func.max(User.id), 0)).select_from(User)
    ).one()
    if existing and not yes:
        raise click.ClickException(
            f"The database already holds {existing} profiles. Seeded profiles and their audit "
            "entries can never be removed; add --yes to add them anyway."
        )
    plan = make_plan(seed, users, changes, first_number=highest_id + 1)
    taken = _taken_emails(plan.emails())
    if taken:
        raise click.ClickException(
            f"{len(taken)} of the generated emails are already used by active profiles "
            f"(e.g. {taken[0]}); nothing was written."
        )
    db.session.rollback()  # end the read transaction before the long write

    try:
        with _progress(users + changes, "Seeding") as progress:
            result = write_plan(plan, batch_size=batch_size, progress=progress)
    except IntegrityError as error:
        # Only a concurrent save of one of the run's emails gets past the check above.
        db.session.rollback()
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        raise click.ClickException(
            f"Stopped: the database refused a write ({constraint or 'integrity error'}), "
            "probably a profile saved meanwhile with one of the run's emails. The "
            "transactions committed before it stay, each audited and chained."
        ) from None
    click.echo(
        f"Seeded {users} profiles ({_rate(users, result.profile_seconds)}) and {changes} "
        f"changes ({_rate(changes, result.change_seconds)}) with seed {seed}: "
        f"{users + changes} audit entries in "
        f"{result.profile_seconds + result.change_seconds:.1f} s."
    )


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.0f}/s" if count and seconds > 0 else "-"
