"""What ``lrelease plan`` and ``deploy --dry-run`` show: each wave with its hosts, capacity, gate
and time; which ``bake_seconds`` applies; the estimate (usual and longest); first installs.

:func:`plan_data` gathers it as JSON-ready data (the ``--json`` output), :func:`render` lays it
out for a human. Reads the state database (first installs, the gate's past looks), no host.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from datetime import datetime, timedelta

from lrelease import policies, secrets, statedb
from lrelease.config import EnvironmentConfig, show_duration
from lrelease.plan import Estimate, GateTiming, Plan
from lrelease.state import StateStore
from lrelease.statedb import iso

FIRST_INSTALL = ("* first install (no build recorded): the state database has no build recorded for {hosts}. If a "
                 "host has none either, a failed gate stops its app and leaves it drained: there is nothing to "
                 "roll back to (the roll-out ends with exit 1 and says so). This is the state database's view, not "
                 "the host's: a host installed by other means, or under another state_dir, also shows here")


def plan_data(env: EnvironmentConfig, store: StateStore | None, plan: Plan, est: Estimate, *,
              state_problem: str = "", build: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """The waves, each with its gate and expected time, the estimate, which bake applies, the
    hosts with no build recorded in ``store`` (in switching order), and the release policies
    (``policies``: pause, captain, Next's evidence for ``build``, whether a deploy by ``actor``
    would be refused now). ``store`` None: the state database cannot be used (``state_problem``
    says why); the plan goes on without its records."""
    now = store.clock() if store is not None else statedb.utc_now()
    core = {**_plan_core(env, plan, est), "window": window_data(env, now, est)}
    if store is None:
        return {**core, "first_install": [], "state_problem": state_problem}
    recorded = store.hosts_with_build(env.name)
    return {**core, "first_install": [h for h in (*plan.done, *plan.hosts) if h not in recorded],
            "policies": policy_data(env, store, build, actor)}


def window_data(env: EnvironmentConfig, now: datetime, est: Estimate) -> dict[str, Any] | None:
    """The deploy window against the estimate: a roll-out started now (or, the window being
    closed, when it next opens) ends about ``estimated_end`` (``estimated_end_max`` at its
    longest); ``warning`` when that is after the window closes (it would pause there)."""
    window = env.window
    if window is None:
        return None
    start = window.next_open(now)
    data: dict[str, Any] = {**window.to_dict(), "open": start == now, "starts_at": None, "closes_at": None,
                            "estimated_end": None, "estimated_end_max": None, "fits": False, "fits_max": False,
                            "warning": None}
    if start is None:
        data["warning"] = "the window does not open within a year: no roll-out can start (a captain's --hotfix can)"
        return data
    closes = window.closes_at(start)
    assert closes is not None  # open at its own opening
    end, longest = start + timedelta(seconds=est.seconds), start + timedelta(seconds=est.max_seconds)
    data.update(starts_at=iso(start), closes_at=iso(closes), estimated_end=iso(end), estimated_end_max=iso(longest),
                fits=end <= closes, fits_max=longest <= closes)
    left = show_duration((closes - start).total_seconds())
    if not data["fits"]:
        data["warning"] = (f"the roll-out usually takes {show_duration(est.seconds)} and the window leaves {left}: "
                           "it would pause at a wave boundary when the window closes (exit 5; `lrelease resume` in "
                           "the next window)")
    elif not data["fits_max"]:
        data["warning"] = (f"at its longest ({show_duration(est.max_seconds)}) the roll-out would not finish in the "
                           f"{left} the window leaves: it would then pause at a wave boundary (exit 5)")
    return data


def window_lines(data: dict[str, Any] | None, env: EnvironmentConfig) -> list[str]:
    """The window in a line or two: open or when it opens, the estimated end, a warning."""
    if not data:
        return []
    window = env.window
    assert window is not None
    rules = window.describe()
    if data["starts_at"] is None:
        return [f"deploy window {rules}: closed", f"warning: {data['warning']}"]

    def local(stamp: str) -> str:
        return window.local(datetime.fromisoformat(stamp))

    state = (f"open now, closes {local(data['closes_at'])}" if data["open"] else
             f"closed now; opens {local(data['starts_at'])}, closes {local(data['closes_at'])}")
    started = "started now" if data["open"] else "started when it opens"
    lines = [f"deploy window {rules}: {state}; a roll-out {started} ends about {local(data['estimated_end'])} "
             f"(at the longest {local(data['estimated_end_max'])})"]
    if data["warning"]:
        lines.append(f"warning: {data['warning']}")
    return lines


def policy_data(env: EnvironmentConfig, store: StateStore, build: str | None, actor: str | None) -> dict[str, Any]:
    """The release policies of ``env`` now (lrelease/policies.py), as the plan shows them."""
    pause, captain = store.env_pause(env.name), store.captain(env.name)
    data: dict[str, Any] = {"env_paused": pause.to_dict() if pause else None,
                            "captain": captain.to_dict() if captain else None, "captain_mode": env.captain,
                            "requires": None, "deploy_refused": None}
    if env.requires is not None:
        req = {"env": env.requires.env, "soak": show_duration(env.requires.soak_seconds), "evidence": None}
        if build is not None:
            req["evidence"] = policies.next_evidence(store, build, env.requires).to_dict()
        data["requires"] = req
    if actor is not None and build is not None:
        data["deploy_refused"] = policies.decide(store, env.name, actor=actor, action="deploy", build=build,
                                                 environment=env).refused
    return data


def _plan_core(env: EnvironmentConfig, plan: Plan, est: Estimate) -> dict[str, Any]:
    waves = [{**w.to_dict(), "estimate_seconds": est.waves[i], "gate": wave_gate(est.gate, w.in_service_after)}
             for i, w in enumerate(plan.waves)]
    return {**plan.to_dict(), "waves": waves, **est.to_dict(), "bake": bake_note(env.bake_seconds, est.gate)}


def wave_gate(gate: GateTiming, reference: int) -> str:
    """A wave's gate in one phrase; ``reference``: the hosts still on the old build meanwhile."""
    if gate.kind == "http":
        return (f"http {secrets.mask_url(gate.health_path)}: bake {gate.bake_seconds:g}s, "
                f"healthy within {gate.timeout_seconds:g}s")
    against = f"vs {reference} host{'s' if reference != 1 else ''} not yet switched" if reference else "vs its own past"
    return (f"apm {gate.provider} {against}, health {secrets.mask_url(gate.health_path)}: bake {gate.bake_seconds:g}s, "
            f"a look every {gate.interval_seconds:g}s up to {gate.max_bake_seconds:g}s, policy {gate.policy}")


def bake_note(env_bake: float, gate: GateTiming) -> str:
    """Which `bake_seconds` applies, in one sentence."""
    if gate.kind == "http" and gate.bake_from == "bake_seconds":
        return (f"bake {gate.bake_seconds:g}s: the environment's bake_seconds (no gate: section; with one, "
                "the gate's bake_seconds applies)")
    if gate.bake_from == "gate.bake_seconds":
        return (f"bake {gate.bake_seconds:g}s: the gate's bake_seconds, which wins over the environment's "
                f"bake_seconds ({env_bake:g}s; that one is only the gate's default)")
    return (f"bake {gate.bake_seconds:g}s: the environment's bake_seconds, the gate's default (the gate sets no "
            "bake_seconds of its own, or the same; one set under gate: would win)")


HOSTS_SHOWN = 3  # per wave (and per list of hosts): at 80 columns a cell no taller than its gate


def summarise(hosts: list[str], marked: frozenset[str] | set[str] = frozenset(), *, shown: int = HOSTS_SHOWN,
              more: str = ", ") -> str:
    """``a, b*, c, +997 more``: the first ``shown`` names (those in ``marked`` with a ``*``) and
    a count of the rest after ``more``, so a wave of 10,000 hosts is one short cell on a narrow
    terminal. Never "+1 more" where the name itself fits."""
    names = hosts if len(hosts) <= shown + 1 else hosts[:shown]
    text = ", ".join(f"{h}*" if h in marked else h for h in names)
    return text if len(names) == len(hosts) else f"{text}{more}+{len(hosts) - shown} more"


def render(env_name: str, data: dict[str, Any], build: str | None, env: EnvironmentConfig | None = None) -> Group:
    """The plan for a human: each wave's first hosts then a count of the rest (``--json`` lists them all)."""
    spec = list(data["spec"])
    for at in sorted(data.get("pauses") or (), reverse=True):  # a pause after wave N: after the N-th value
        spec.insert(at, "pause")
    title = f"plan: {build or '<build>'} to {env_name} ({data['fleet_size']} hosts, waves {_spec(spec)})"
    table = Table(title=title)
    for col in ("wave", "hosts", "in service meanwhile", "gate", "time"):
        table.add_column(col, overflow="fold" if col == "hosts" else "ellipsis")  # a host name is never cut
    first = set(data["first_install"])
    pauses = set(data.get("pauses") or ())
    for w in data["waves"]:
        hosts = summarise(w["hosts"], first, more=",\n")  # the count on a line of its own
        table.add_row(str(w["index"]), hosts, f"{w['in_service_after']} ({w['in_service_pct']:.0f}%)", w["gate"],
                      f"~{w['estimate_seconds']:.0f}s")
        if w["index"] in pauses:
            table.add_row("pause", "awaits promotion", "", "", "")
    parts: list[Any] = [table]
    if data["done"]:
        parts.append(Text(f"already done: {summarise(data['done'])}"))
    for at in data.get("pauses") or ():
        parts.append(Text(f"pause after wave {at}: the roll-out stops there once the wave is judged, awaiting "
                          f"promotion (exit 5): `lrelease promote --env {env_name}` goes on, `lrelease abort --env "
                          f"{env_name}` rolls back what it switched"))
    parts.append(Text(data["bake"]))
    if first:
        parts.append(Text(FIRST_INSTALL.format(hosts=summarise(data["first_install"]))))
    if data.get("state_problem"):
        parts.append(Text(f"without the state database's records (first installs, recorded pace): "
                          f"{data['state_problem']}"))
    parts.append(Text(_estimate_line(env_name, data)))
    if env is not None:
        parts.extend(Text(line) for line in window_lines(data.get("window"), env))
    parts.extend(Text(line) for line in policy_lines(data.get("policies"), build))
    return Group(*parts)


def _spec(values: list[Any]) -> str:
    """``[1, pause, "100%"]``: the wave list as lrelease.yml writes it."""
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) and v != "pause" else str(v) for v in values) + "]"


def policy_lines(data: dict[str, Any] | None, build: str | None) -> list[str]:
    """The release policies in a few lines (none when no policy applies)."""
    if not data:
        return []
    lines = []
    if data["env_paused"]:
        p = data["env_paused"]
        lines.append(f"environment paused by {p['paused_by']} since {policies.when(p['paused_at'])}: {p['reason']}")
    if data["captain"]:
        c = data["captain"]
        until = f" until {policies.when(c['until'])}" if c["until"] else ""
        lines.append(f"release captain: {c['name']}{until}")
    elif data["captain_mode"] == "required":
        lines.append("release captain: none set, and this environment requires one")
    req = data["requires"]
    if req:
        ev = req["evidence"]
        state = ev["detail"] if ev else "give --build to see the evidence"
        lines.append(f"requires {req['env']} first (soak {req['soak']}): {state}")
    if data["deploy_refused"]:
        lines.append(f"a deploy now would be refused (exit 4): {data['deploy_refused']}")
    return lines


def _estimate_line(env_name: str, data: dict[str, Any]) -> str:
    seconds, longest, gate, pace = (data["estimate_seconds"], data["estimate_max_seconds"], data["gate"],
                                    data["pace"])
    switch = f"~{pace['switch_seconds']:.0f}s"
    usually = ""
    if gate["kind"] == "apm":
        why = "every gate looks until its max_bake_seconds"
        fewest, most = gate["looks_range"]
        if gate["looks_from"]:
            looks = (f"{gate['expected_looks']:.1f} looks, the mean of the last {gate['looks_from']} gates recorded "
                     "(a wave of several hosts waits for its slowest gate: the usual largest of that many)")
            basis = f"as the last {gate['looks_from']} gates recorded did"
        else:
            looks = f"{gate['expected_looks']:.1f} looks (no gate recorded yet: the middle of 1 to {gate['max_looks']})"
            basis = "nothing recorded yet"
        each = f"each wave's switch ({switch}) and its gate: the bake and {looks}"
        if most > fewest:
            usually = (f"; usually {data['estimate_low_seconds']:.0f}-{data['estimate_high_seconds']:.0f} s "
                       f"(every gate deciding at look {fewest} to look {most}: {basis})")
    else:
        why, each = "every health check takes its whole gate_timeout_seconds", f"each wave's switch ({switch}) and gate"
    measured = (f"Staging and switch times: the median of the last {pace['runs']} roll-outs recorded for {env_name}"
                if pace["runs"] else f"Staging and switch times: defaults (no roll-out recorded for {env_name} yet)")
    return (f"estimated time: about {seconds / 60:.1f} min ({seconds:.0f} s: staging "
            f"~{data['estimate_stage_seconds']:.0f}s, then {each}){usually}; up to {longest / 60:.1f} min "
            f"({longest:.0f} s) if {why}. {measured}")
