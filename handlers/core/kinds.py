"""Announcement kinds and subjects, and the registry that says what each kind does when it falls due.

Every announcement has a kind (`AnnouncementKind`; the database refuses a kind not listed in its
`announcement_kinds` table) and may be about one subject, `(subject kind, id)`: an event, a sale, a group buy,
a poll, a member. A feature declares, in its `Feature` (handlers.core.feature):

- for each of its subject kinds, how to look the subject up (`subjects`): a subject that is no longer active
  has its pending announcements skipped ("cancelled"), and an announcement of an `until_start` kind is skipped
  once the subject has started;
- for each of its time-driven kinds, a `DueRule` (`due_rules`): what to do when it is due (`prepare`), why to
  skip it (`skip`), whether it is a deadline settled however late (`deadline`), and what slow follow-up runs
  after the commit (`after_commit`).

The core assembles them into one `Kinds` (in `deps.kinds`); `handlers.shared.due.run_due` dispatches through it
and cancelling is by subject (`repos.announcements.cancel_pending_for(subject_kind, subject_id)`), so a new
time-driven feature adds its kind (a migration inserting it into `announcement_kinds`) and declares its rule
without touching the scheduler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from handlers.core.deps import Deps
from storage.announcements import Announcement
from storage.repos import Repos


class AnnouncementKind(StrEnum):
    """The kinds the shipped features use (storage/migrations/0015_announcement_kinds.sql inserts the same). A
    feature added later may name its own kind in its own package and insert it with its own migration."""

    NOW = "now"  # /announce
    SCHEDULED = "scheduled"  # /schedule
    STAFF = "staff"  # a notice to staff
    PROMO = "promo"  # an event's or a sale's promo ahead of its start
    CANCEL = "cancel"  # an event, sale or group buy was cancelled
    SALE_EARLY = "sale_early"  # a tier's early access to a sale
    SALE_START = "sale_start"  # a sale opens
    SALE_EXPIRED = "sale_expired"  # unused claim codes expired
    GROUPBUY = "groupbuy"  # a group buy's post
    GROUPBUY_CLOSE = "groupbuy_close"  # a group buy's deadline
    GROUPBUY_RESULT = "groupbuy_result"  # its outcome to each participant
    POLL = "poll"  # a poll's post (buttons)
    POLL_NATIVE = "poll_native"  # a poll's post (a channel's own poll where it has one)
    POLL_CLOSE = "poll_close"  # a poll's deadline
    POLL_RESULTS = "poll_results"  # results of a poll closed by staff
    FOLLOWUP = "followup"  # a rating request after a purchase
    GREETING = "greeting"  # a holiday greeting
    BIRTHDAY = "birthday"  # a birthday greeting
    WINBACK = "winback"  # a note to members gone quiet
    FEEDBACK = "feedback"  # an answer to a member's ticket
    POINTS = "points"  # staff gave or took points
    REFERRAL = "referral"  # a referral was credited
    BINDING = "binding"  # accounts were bound


class SubjectKind(StrEnum):
    """What an announcement can be about; `subject_id` is that row's id."""

    EVENT = "event"
    SALE = "sale"
    GROUP_BUY = "group_buy"
    POLL = "poll"
    MEMBER = "member"


Subject = tuple[str, int]
"""(subject kind, id)."""


@dataclass(frozen=True, slots=True)
class SubjectState:
    active: bool
    starts_at: int | None = None  # unix seconds; None: it has no start


SubjectLookup = Callable[[Repos, int], Awaitable[SubjectState | None]]
Prepare = Callable[[Repos, Deps, Announcement], Awaitable[Announcement | None]]
Skip = Callable[[Repos, Deps, Announcement, int], Awaitable[str | None]]
AfterCommit = Callable[[Deps, Announcement], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DueRule:
    """What the scheduler does with one kind of announcement when it is due.

    `prepare` runs before the recipients are queued and returns the announcement to queue (its text may have
    changed), or None when there is nothing left to send (it is settled 'cancelled'). `skip` returns why the
    announcement is not sent (it is settled 'skipped' and staff hear why), or None. A `deadline` is settled
    however late; any other kind is skipped past the grace time. An `until_start` kind is skipped once its
    subject has started."""

    prepare: Prepare | None = None
    skip: Skip | None = None
    deadline: bool = False
    until_start: bool = False
    after_commit: AfterCommit | None = None
    """Slow follow-up work (a chart) run once the transaction that queued the announcement has committed; a
    failure there is logged and loses only that follow-up."""


DEFAULT_RULE = DueRule()
"""Kinds without a rule are queued as written, unless past the grace time or their subject is inactive."""


class Kinds:
    """The announcement kinds' rules and the subjects' lookups, assembled from the features that declare them."""

    def __init__(self, rules: Mapping[str, DueRule] | None = None, subjects: Mapping[str, SubjectLookup] | None = None):
        self._rules = dict(rules or {})
        self._subjects = dict(subjects or {})

    @classmethod
    def assemble(cls, declared: Iterable[tuple[Mapping[str, DueRule], Mapping[str, SubjectLookup]]]) -> Kinds:
        """Merge each feature's (rules, subjects); a kind or subject kind declared twice differently is refused
        (one rule shared by two features, such as the promo's, may be declared by both)."""
        rules: dict[str, DueRule] = {}
        subjects: dict[str, SubjectLookup] = {}
        for feature_rules, feature_subjects in declared:
            for kind, rule in feature_rules.items():
                if rules.setdefault(kind, rule) != rule:
                    raise ValueError(f"announcement kind {kind!r} has two rules")
            for subject_kind, lookup in feature_subjects.items():
                if subjects.setdefault(subject_kind, lookup) is not lookup:
                    raise ValueError(f"subject kind {subject_kind!r} has two lookups")
        return cls(rules, subjects)

    def with_rule(self, kind: str, rule: DueRule) -> Kinds:
        """A copy that also knows `kind` (tests declare kinds of their own)."""
        return Kinds({**self._rules, kind: rule}, self._subjects)

    def rule_of(self, kind: str) -> DueRule:
        return self._rules.get(kind, DEFAULT_RULE)

    async def subject_state(self, repos: Repos, ann: Announcement) -> SubjectState | None:
        """The state of the announcement's subject; None when it has none, or none that can be inactive."""
        if ann.subject_kind is None or ann.subject_id is None:
            return None
        lookup = self._subjects.get(ann.subject_kind)
        return await lookup(repos, ann.subject_id) if lookup is not None else None
