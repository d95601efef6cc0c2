"""Every figure of the speed-and-scale targets in one table, measured in one run.

    .venv/bin/python bench/table.py [--quick] [--json FILE]       # as root (the roll-out bench's sandbox)

Runs the existing benches as modules, one after another, and prints one Markdown table: each
figure, what it measured, its target, met or missed, the load average (1 min) while it ran, and
the command that reproduces it alone.

- rollout_bench.measure: lrelease deploy vs the naive serial playbook, the fleet rollback
  (groups keeping rollback.min_in_service, 50%, in service) vs that deploy with the requests
  HAProxy failed meanwhile, and the wrapper (`lrelease deploy`) vs bare `ansible-playbook
  playbooks/deploy.yml` with the wrapper's own extra vars; 6 sandbox nodes, 20 MiB, bake 0.
- scale_bench.measure: `plan` and `inventory generate` CPU for 10,000 hosts and 10,000 / 1,000,
  event handling 1,000 / 100 hosts.
- gate_scale_bench.run_wave: the scrape gate's CPU per wave beyond the bake, 50 vs 5 hosts.

`--quick`: one repetition each (a look at the figures, ~6 minutes on a quiet machine; the full run
takes 15-25). Ratios, not seconds, are the figures: the machine's 2 CPUs are shared, so only what
was measured side by side in one run compares. Exit status 0 when every target was met, 1 when
one was missed or a run failed to do its job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gate_scale_bench  # noqa: E402
import rollout_bench  # noqa: E402
import scale_bench  # noqa: E402

GATE_WAVES = (5, 50)
GATE_REFERENCES = 50


class Section:
    """One bench's rows, with the load average (1 min) at its start and end and its command."""

    def __init__(self, command: str) -> None:
        self.command, self.rows, self.notes = command, [], []
        self.load = [os.getloadavg()[0]]

    def done(self) -> Section:
        self.load.append(os.getloadavg()[0])
        return self

    def add(self, figure: str, measured: str, target: str, met: bool) -> None:
        self.rows.append((figure, measured, target, met))


def _python() -> str:
    exe = Path(sys.executable)
    return str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else str(exe)


def rollout_section(reps: int, profile: Path | None = None) -> Section:
    slot = os.environ.get("LRELEASE_TEST_SLOT", "")
    sec = Section(f"{'LRELEASE_TEST_SLOT=' + slot + ' ' if slot else ''}{_python()} bench/rollout_bench.py --reps {reps}")
    results, cfg = rollout_bench.measure(reps, profile=profile)
    ratios, med, targets = results.ratios(), results.median, rollout_bench.TARGETS
    sec.add(f"roll-out vs naive serial playbook ({cfg.nodes} nodes, 20 MiB, bake 0; "
            f"{med('deploy'):.1f} / {med('naive'):.1f} s)",
            f"{ratios['deploy / naive']:.2f}", f"<= {targets['deploy / naive']}",
            ratios["deploy / naive"] <= targets["deploy / naive"])
    sec.add(f"fleet rollback, >= 50% in service, vs roll-out ({med('rollback'):.1f} / {med('deploy'):.1f} s)",
            f"{ratios['rollback / deploy']:.2f}", f"<= {targets['rollback / deploy']}",
            ratios["rollback / deploy"] <= targets["rollback / deploy"])
    sent = sum(r["sent"] for r in results.rollback_load)
    sec.add(f"fleet rollback: requests HAProxy failed (of {sent} sent at {rollout_bench.LB_RATE}/s)",
            str(results.rollback_failed), "0", results.rollback_failed == 0)
    sec.add(f"wrapper vs bare `ansible-playbook`, same playbook and vars ({med('deploy'):.1f} / {med('bare'):.1f} s)",
            f"{ratios['wrapper / bare']:.2f}", f"<= {targets['wrapper / bare']}",
            ratios["wrapper / bare"] <= targets["wrapper / bare"])
    cpu = {k: statistics.median(results.cpu[k]) for k in ("deploy", "bare")}
    sec.notes.append(f"controller CPU of a deploy (the whole process tree): lrelease {cpu['deploy']:.1f} s, bare "
                     f"ansible-playbook {cpu['bare']:.1f} s; the rollbacks' load: "
                     + ", ".join(f"{r['failed']} failed of {r['sent']}" for r in results.rollback_load))
    sec.load[0] = min(results.loads)
    sec.load.append(max(results.loads))
    return sec.done()


def scale_section(reps: int) -> Section:
    sec = Section(f"{_python()} bench/scale_bench.py --reps {reps}")
    for row in scale_bench.measure(reps)["rows"]:
        sec.add(*row)
    return sec.done()


def gate_section(reps: int, looks: int) -> Section:
    """The scrape gate's CPU beyond the bake per wave (mark + looks, every task of the wave), 50
    vs 5 canaries with 50 reference hosts, waves alternating (gate_scale_bench's own loop)."""
    small, large = GATE_WAVES
    sec = Section(f"{_python()} bench/gate_scale_bench.py --reps {reps} --looks {looks}")
    cpu: dict[int, list[float]] = {small: [], large: []}
    with gate_scale_bench.fleet(gate_scale_bench.demo_pages()) as (base, _served):
        for rep in range(reps):
            for wave in GATE_WAVES if rep % 2 == 0 else GATE_WAVES[::-1]:
                cpu[wave].append(gate_scale_bench.run_wave("wave", wave, GATE_REFERENCES, looks, 0.5, base)["cpu"])
    a, b = (statistics.median(cpu[w]) for w in GATE_WAVES)
    sec.add(f"gate work beyond the bake per wave, {large} vs {small} hosts ({b:.3f} / {a:.3f} s CPU)",
            f"{b / a:.2f}", f"<= {gate_scale_bench.TARGET:g}", b / a <= gate_scale_bench.TARGET)
    return sec.done()


def render(sections: list[Section], command: str, started: float) -> str:
    lines = ["| figure | measured | target | result | load avg (1 min) | reproduce alone |",
             "|---|---|---|---|---|---|"]
    for n, sec in enumerate(sections, 1):
        load = f"{min(sec.load):.1f}-{max(sec.load):.1f}"
        for figure, measured, target, met in sec.rows:
            lines.append(f"| {figure} | {measured} | {target} | {'met' if met else '**missed**'} | {load} | ({n}) |")
    lines.append("")
    for n, sec in enumerate(sections, 1):
        lines.append(f"({n}) `{sec.command}`" + "".join(f"; {note}" for note in sec.notes))
    met = sum(r[3] for s in sections for r in s.rows)
    total = sum(len(s.rows) for s in sections)
    lines += ["", f"{met} of {total} targets met; {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, "
              f"{(time.time() - started) / 60:.0f} min, {os.cpu_count()} CPUs shared with other work; "
              f"command: `{command}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of each bench (a quick look)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="per-task timings of the roll-out bench's playbook runs (rollout_bench.py --profile)")
    args = parser.parse_args(argv)
    started = time.time()
    rollout_reps, scale_reps, gate_reps, looks = (1, 1, 1, 2) if args.quick else (3, 5, 3, 4)
    slot = os.environ.get("LRELEASE_TEST_SLOT", "")
    command = (f"{'LRELEASE_TEST_SLOT=' + slot + ' ' if slot else ''}{_python()} bench/table.py"
               + (" --quick" if args.quick else ""))
    sections = []
    try:
        print("roll-out, rollback, wrapper vs bare (sandbox) ...", file=sys.stderr)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        sections.append(rollout_section(rollout_reps, args.profile))
    except rollout_bench.RunFailed as exc:
        print(f"table: a roll-out bench run did not do its job, no figures: {exc}", file=sys.stderr)
        return 1
    print("scale: plan, inventory generate, events ...", file=sys.stderr)
    sections.append(scale_section(scale_reps))
    print("gate work per wave ...", file=sys.stderr)
    sections.append(gate_section(gate_reps, looks))
    print(render(sections, command, started))
    if args.json:
        args.json.write_text(json.dumps([{"command": s.command, "load": s.load, "rows": s.rows} for s in sections],
                                        indent=2) + "\n")
    return 0 if all(r[3] for s in sections for r in s.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
