"""The release policies: the one place that decides "may ACTOR start ACTION on ENV now?".

Used by the wrapper (lrelease/rollout.py: deploy, resume, rollback, after it took the
environment's lock and before it touches a host or records the roll-out as begun) and by the
playbooks' policy step when no wrapper runs them (AWX, cron). Three policies, checked in this
order; the first that refuses decides, as one line saying what refused and what would allow it:

- **Environment pause** (``lrelease pause --env ENV --reason``): no deploy and no resume starts on
  a paused environment, whoever asks (no override: ``lrelease unpause`` lifts it). A rollback is
  still allowed: it is how one gets out of the trouble the pause is usually for.
- **Release captain** (``lrelease captain set NAME --env ENV [--until]``): where a captain is set
  (and not expired), every roll-out there, rollbacks included, is started by the captain (the
  actor's name compared as recorded), or by anyone with ``--force --reason "..."`` (recorded with
  the roll-out). ``captain: required`` in lrelease.yml also refuses when no captain is set.
- **Deploy window** (``window: {timezone, weekly, freeze}``; lrelease/window.py): outside its
  window no deploy and no resume starts, unless the environment's release captain asks with
  ``--hotfix --reason "..."`` (recorded). No window: always open. A rollback is never refused by
  a window (getting out of trouble cannot wait for the night).
- **Next before production** (``requires: {env: next, soak: 30m}``): a deploy of a build that is
  not proven on the required environment is refused unless ``--skip-next --reason "..."``
  (recorded). Proven: the build's roll-out there succeeded (every host passed its gate), every
  host then ran it for the soak time, and no rollback of it (nor a failed roll-out of it) came
  since. A resume continues a roll-out already let through, and a rollback goes back: neither is
  checked against it.

:func:`check_start` needs only the state store for the first two; Next needs the environment's
settings (``environment=`` or ``requires=``) and the build. :func:`decide` says the same without
raising, with what the roll-out's row should keep (``Decision.record``): the overrides used and
the evidence of Next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lrelease.config import EnvironmentConfig, Requirement, show_duration
from lrelease.errors import ExitCode, LreleaseError
from lrelease.statedb import ACTIONS, iso
from lrelease.window import HORIZON_DAYS, Window

if TYPE_CHECKING:
    from lrelease.state import Rollout, StateStore

__all__ = ["Decision", "NextEvidence", "PolicyRefused", "check_start", "decide", "next_evidence", "when",
           "window_closes"]

# Statuses of a roll-out of the build that end its proof: it failed there (or was cut short) since.
_FAILED = ("rolled_back", "rollback_failed", "crashed", "lock_lost")


class PolicyRefused(LreleaseError):
    """A release policy refuses the roll-out (exit 4); ``policy`` names which: ``env_paused``,
    ``captain``, ``window`` or ``requires``. Nothing was changed."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, policy: str = "") -> None:
        self.policy = policy
        super().__init__(message)


@dataclass(frozen=True)
class NextEvidence:
    """Whether ``build`` is proven on the required environment, and why (one phrase)."""

    env: str  # the environment the build must be proven on
    build: str
    soak_seconds: float
    proven: bool
    detail: str  # "1.6.0 was never deployed to next", "soaking on next: 12 of 30 minutes"...
    live_since: str | None = None  # when its roll-out there succeeded (the soak's start)
    ran_seconds: float = 0.0  # the longest time every host ran it since (now, if it still runs)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "soak": show_duration(self.soak_seconds)}


@dataclass(frozen=True)
class Decision:
    """What the policies say: ``refused`` (one line) and which ``policy``, or None and the
    ``record`` the roll-out's row keeps (overrides used, Next's evidence)."""

    refused: str | None = None
    policy: str = ""
    record: dict[str, Any] = field(default_factory=dict)

    def refusal(self) -> dict[str, Any]:
        """The row of a refused roll-out keeps this."""
        return {"refused": {"policy": self.policy, "message": self.refused}}


def when(stamp: str) -> str:
    """``2026-12-01 06:00 UTC`` for a stored ISO time (minutes are what a human plans by)."""
    moment = datetime.fromisoformat(stamp)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def check_start(store: StateStore, env: str, *, actor: str, action: str, force_reason: str = "",
                **more: Any) -> None:
    """Return None when ``actor`` may start ``action`` on ``env`` now; else raise PolicyRefused
    (exit 4) with one line. ``more``: the keyword arguments of :func:`decide` (``build``,
    ``environment`` or ``requires``, ``captain_required`` and ``window``, ``skip_next_reason``,
    ``hotfix_reason``, ``now``)."""
    decision = decide(store, env, actor=actor, action=action, force_reason=force_reason, **more)
    if decision.refused is not None:
        raise PolicyRefused(decision.refused, decision.policy)


def decide(store: StateStore, env: str, *, actor: str, action: str, force_reason: str = "",
           skip_next_reason: str = "", build: str | None = None, environment: EnvironmentConfig | None = None,
           requires: Requirement | None = None, captain_required: bool | None = None,
           window: Window | None = None, hotfix_reason: str = "", now: datetime | None = None) -> Decision:
    """The policies' answer for ``actor`` starting ``action`` (deploy, resume, rollback) on
    ``env``. ``force_reason`` (non-empty) lets a non-captain through; ``skip_next_reason`` lets an
    unproven build through; ``hotfix_reason`` lets the captain start outside the window.
    ``environment`` (its ``captain``, ``window`` and ``requires`` settings) or the settings
    themselves; ``now`` defaults to the store's clock."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if environment is not None:
        requires = environment.requires if requires is None else requires
        window = environment.window if window is None else window
        captain_required = environment.captain == "required" if captain_required is None else captain_required
    record: dict[str, Any] = {}
    if action != "rollback":
        paused = store.env_pause(env)
        if paused is not None:
            return Decision(f"environment {env} is paused by {paused.paused_by} since {when(paused.paused_at)} "
                            f"({paused.reason}): no roll-out starts there until `lrelease unpause --env {env}` "
                            "(a rollback still may)", "env_paused")
    # A development environment has no release captain (`captain set` refuses one; one set before
    # that rule, or by hand in the store, does not apply there).
    development = environment is not None and environment.kind == "development"
    captain = None if development else store.captain(env)
    if captain is not None and captain.name != actor:
        if not force_reason:
            until = f" until {when(captain.until)}" if captain.until else ""
            return Decision(f"{env}'s release captain is {captain.name}{until}; {actor} is not: ask "
                            f"{captain.name}, or add --force --reason \"...\" (recorded)", "captain")
        record["forced"] = {"captain": captain.name, "reason": force_reason}
    elif captain is None and captain_required:
        if not force_reason:
            return Decision(f"{env} needs a release captain and has none: `lrelease captain set NAME --env {env}`,"
                            " or add --force --reason \"...\" (recorded)", "captain")
        record["forced"] = {"captain": None, "reason": force_reason}
    if action != "rollback" and window is not None:
        moment = now if now is not None else store.clock()
        if not window.is_open(moment):
            refused = _outside_window(env, window, moment, captain.name if captain else None, actor, hotfix_reason)
            if refused:
                return Decision(refused, "window")
            record["hotfix"] = {"captain": actor, "reason": hotfix_reason, "at": window.local(moment),
                                "window": window.describe(), "next_open": _opens(window, moment)}
    if action == "deploy" and requires is not None and build is not None:
        evidence = next_evidence(store, build, requires, now=now)
        record["requires"] = evidence.to_dict()
        if not evidence.proven:
            if not skip_next_reason:
                return Decision(f"{build} is not proven on {requires.env}, which {env} requires first: "
                                f"{evidence.detail}; deploy it there first, or add --skip-next --reason \"...\""
                                " (recorded)", "requires")
            record["skipped_next"] = {"requires": requires.env, "missing": evidence.detail, "reason": skip_next_reason}
    return Decision(record=record)


def _opens(window: Window, moment: datetime) -> str:
    """When ``window`` next opens after ``moment``, for a human: local time (and UTC)."""
    opens = window.next_open(moment)
    if opens is None:
        return f"not within the next {HORIZON_DAYS} days"
    return f"{window.local(opens)} ({when(iso(opens))})"


def _outside_window(env: str, window: Window, moment: datetime, captain: str | None, actor: str,
                    hotfix_reason: str) -> str:
    """The refusal of a start outside the window; empty when the captain's --hotfix lets it through."""
    if hotfix_reason and captain == actor:
        return ""
    closed = (f"{env}'s deploy window is closed at {window.local(moment)} (window: {window.describe()}); "
              f"it next opens {_opens(window, moment)}")
    if not hotfix_reason:
        return closed + "; outside it only the release captain starts a roll-out, with --hotfix --reason \"...\" (recorded)"
    if captain is None:
        return closed + f"; --hotfix is for {env}'s release captain and it has none (`lrelease captain set NAME --env {env}`)"
    return closed + f"; --hotfix is for {env}'s release captain, {captain}; {actor} is not"


def window_closes(environment: EnvironmentConfig, now: datetime) -> datetime | None:
    """When the window a roll-out starting ``now`` runs in closes (the wrapper stops the roll-out
    at the next wave boundary then); None without a window, or outside it (a hot-fix runs on)."""
    if environment.window is None:
        return None
    return environment.window.closes_at(now)


def next_evidence(store: StateStore, build: str, requires: Requirement, *, now: datetime | None = None) -> NextEvidence:
    """Is ``build`` proven on ``requires.env``? Read from the roll-outs recorded there, oldest
    first, from its first one on: it goes live when a roll-out of it succeeds (every host passed
    its gate); it stops running there when a roll-out of another build starts; a rollback of it
    (or one while it was live), or a failed roll-out of it, wipes every proof before."""
    where, soak = requires.env, requires.soak_seconds
    now_iso = iso(now if now is not None else store.clock())
    rows = [r for r in store.rollouts_from(where, build) if r.status != "refused"]
    live_since: str | None = None
    live_roots: set[str] = set()  # the roll-out chains (their first roll-out) that put it live
    ran: list[float] = []  # each time it ran there, in seconds, since the last proof was wiped
    spoiled = ""  # why the proofs before were wiped (its last rollback or failure)
    replaced = ""  # the build whose roll-out ended its last run there
    ever = succeeded = False
    for r in rows:
        root = store.chain_root(r).id if r.resumes else r.id
        if r.build == build and r.action in ("deploy", "resume"):
            ever = True
            if r.status == "succeeded" and r.finished_at:
                succeeded = True
                if live_since is None:
                    live_since = r.finished_at
                live_roots.add(root)
            elif r.status in _FAILED:
                live_since, ran = None, []
                spoiled = f"its roll-out {r.id} there ended {r.status} at {when(r.finished_at or r.started_at)}"
        elif r.action == "rollback":
            if r.undoes in live_roots or (live_since is not None and r.undoes is None) or _undoes(store, r, build):
                live_since, ran = None, []
                spoiled = f"it was rolled back there at {when(r.started_at)} (rollback {r.id})"
        elif live_since is not None:  # another build's roll-out began: it stopped running there
            ran.append(_seconds(live_since, r.started_at))
            live_since = None
            replaced = r.build
    current = _seconds(live_since, now_iso) if live_since is not None else None
    best = max([*ran, *([current] if current is not None else [])], default=0.0)
    evidence = {"env": where, "build": build, "soak_seconds": soak, "live_since": live_since, "ran_seconds": best}
    if best >= soak and (current is not None or ran):
        return NextEvidence(proven=True, detail=f"proven on {where}: every host ran {build} for {_span(best)} "
                                                f"after its roll-out succeeded (soak {show_duration(soak)})", **evidence)
    if current is not None:
        detail = f"soaking on {where}: {_progress(current, soak)}"
    elif ran:
        detail = f"{build} ran on {where} only {_progress(max(ran), soak)} before {replaced} replaced it"
    elif spoiled:
        detail = f"{build} is not live on {where}: {spoiled}"
    elif ever and not succeeded:
        detail = f"{build} has not completed a roll-out on {where} (its last ended {rows[-1].status})" \
            if rows[-1].build == build else f"{build} has not completed a roll-out on {where}"
    else:
        detail = f"{build} was never deployed to {where}"
    return NextEvidence(proven=False, detail=detail, **evidence)


def _undoes(store: StateStore, rollback: Rollout, build: str) -> bool:
    """A rollback that undid a roll-out chain of ``build``."""
    return bool(rollback.undoes) and store.rollout(rollback.undoes).build == build


def _seconds(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def _span(seconds: float) -> str:
    return show_duration(seconds - seconds % 60 if seconds >= 120 else seconds)


def _progress(ran: float, soak: float) -> str:
    """``12 of 30 minutes`` (``7 of 20 seconds`` for a soak under two minutes)."""
    if soak >= 120:
        return f"{int(ran // 60)} of {int(soak // 60)} minutes"
    return f"{int(ran)} of {int(soak)} seconds"


def describe(policy: dict[str, Any] | None) -> list[str]:
    """What a roll-out's row keeps of the policies (``Rollout.policy``), one phrase each, for
    ``lrelease show``: its refusal, or the overrides it went ahead with and Next's evidence."""
    if not isinstance(policy, dict):
        return []
    lines = []
    refused = policy.get("refused")
    if isinstance(refused, dict):
        lines.append(f"refused by the release policies: {refused.get('message')}")
    forced = policy.get("forced")
    if isinstance(forced, dict):
        whose = f"not the release captain ({forced['captain']})" if forced.get("captain") else "no release captain"
        lines.append(f"--force ({whose}): {forced.get('reason')}")
    hotfix = policy.get("hotfix")
    if isinstance(hotfix, dict):
        lines.append(f"--hotfix by the release captain {hotfix.get('captain')} outside the deploy window "
                     f"(at {hotfix.get('at')}; window {hotfix.get('window')}): {hotfix.get('reason')}")
    skipped = policy.get("skipped_next")
    if isinstance(skipped, dict):
        lines.append(f"--skip-next ({skipped.get('missing')}): {skipped.get('reason')}")
    evidence = policy.get("requires")
    if isinstance(evidence, dict) and evidence.get("proven"):
        lines.append(f"requires: {evidence.get('detail')}")
    return lines


def short(policy: dict[str, Any] | None) -> str:
    """The same in a word or two, for ``lrelease history``'s status column: ``refused: captain``,
    ``--force``, ``--hotfix``, ``--skip-next``; empty when no override was used."""
    if not isinstance(policy, dict):
        return ""
    refused = policy.get("refused")
    if isinstance(refused, dict):
        return f"refused: {refused.get('policy')}"
    return ", ".join(flag for key, flag in (("forced", "--force"), ("hotfix", "--hotfix"), ("skipped_next", "--skip-next"))
                     if key in policy)
