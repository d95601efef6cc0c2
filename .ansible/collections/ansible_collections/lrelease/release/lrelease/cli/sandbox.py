"""``lrelease sandbox``: the local fleet that demos and tests run on."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from lrelease.cli.helptext import epilog
from lrelease.cli.tables import print_table, table
from lrelease.errors import ExitCode, SandboxError
from lrelease.sandbox import provision, services
from lrelease.sandbox.config import DEFAULT_SUBNET, SANDBOX_GATES
from lrelease.sandbox.demoapp.build import Behaviour
from lrelease.sandbox.fleet import FAULTS, UNDO, Sandbox, SandboxStatus

console = Console()
state_option = click.option("--state-dir", type=click.Path(path_type=Path), envvar="LRELEASE_SANDBOX_DIR",
                            default=None, help="Where the sandbox keeps its state [default: /var/lib/lrelease-sandbox].")


@click.group(epilog=epilog(["lrelease sandbox up --nodes 6", "lrelease sandbox fault node2 link-down",
                            "lrelease sandbox down"],
                           (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.INTERRUPTED),
                           USAGE="usage error, or the sandbox could not do it (not root, a tool missing)",
                           INTERRUPTED="interrupted (Ctrl-C or SIGTERM; `lrelease sandbox up` repairs leftovers)"))
def sandbox() -> None:
    """A local fleet: namespace nodes (own network, processes, hostname and app directories) with sshd,
    a demo app, HAProxy and Prometheus."""


@sandbox.command()
@click.option("--nodes", "-n", type=click.IntRange(1, 64), help="Number of nodes [default: as before, else 4].")
@click.option("--subnet", help=f"Private /24 for the nodes, only on this machine [default: as before, else {DEFAULT_SUBNET}].")
@click.option("--load-rate", default=20.0, show_default=True, type=click.FloatRange(0, 500),
              help="Background requests/s spread over the nodes (0: none).")
@click.option("--load-duration", default=3600.0, show_default=True, type=click.FloatRange(1, 6 * 3600),
              help="The background load stops by itself after this many seconds.")
@click.option("--local", is_flag=True, help="Without root: nodes are directories + loopback ports, no SSH (limited).")
@click.option("--gate", type=click.Choice(SANDBOX_GATES),
              help="The gate of the lrelease.yml it writes: none (/health), or the APM gate with the scrape or "
                   "prometheus provider (give it a --load-rate of 200 or more) [default: as before, else none].")
@click.option("--app-root", "app_roots", multiple=True, metavar="PATH",
              help="A directory private to each node, besides /opt, /var/lib, /var/log, /etc and /root "
                   "(repeatable; replaces the saved list) [default: as before, else none].")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@state_option
def up(nodes: int | None, subnet: str | None, load_rate: float, load_duration: float, local: bool, gate: str | None,
       app_roots: tuple[str, ...], as_json: bool, state_dir: Path | None) -> None:
    """Bring the sandbox up (idempotent: repairs what is missing, keeps what runs)."""
    sb = Sandbox(state_dir)
    sb.up(nodes=nodes, subnet=subnet, load_rate=load_rate, load_duration=load_duration, mode="local" if local else None,
          gate=gate, app_roots=app_roots or None)
    _show(sb.status(), as_json)


@sandbox.command()
@state_option
def down(state_dir: Path | None) -> None:
    """Stop and remove everything the sandbox made (also leftovers of a crashed run)."""
    Sandbox(state_dir).down()
    click.echo("sandbox down: no namespace, bridge, mount or process left")


@sandbox.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@state_option
def status(as_json: bool, state_dir: Path | None) -> None:
    """Nodes with address, reachability, app version and Prometheus target state."""
    _show(Sandbox(state_dir).status(), as_json)


@sandbox.command()
@click.argument("node")
@click.argument("kind", type=click.Choice([*FAULTS, *UNDO, "clear"]))
@state_option
def fault(node: str, kind: str, state_dir: Path | None) -> None:
    """Inject or undo a fault on NODE: link-down/up, sshd-stop/start, disk-full/free, app-kill/start, clear."""
    click.echo(Sandbox(state_dir).fault(node, kind))


@sandbox.command()
@click.option("--node", "nodes", multiple=True, help="Only these nodes (repeatable).")
@state_option
def reset(nodes: tuple[str, ...], state_dir: Path | None) -> None:
    """Back to the baseline build with faults cleared, without rebuilding the fleet."""
    Sandbox(state_dir).reset(list(nodes) or None)
    click.echo("sandbox reset to the baseline build")


@sandbox.command()
@click.argument("build")
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction of / requests answered 500.")
@click.option("--latency-ms", default=0.0, type=click.FloatRange(0), help="Added to every / request.")
@click.option("--health-fail", is_flag=True, help="/health answers 503.")
@click.option("--start-fail", is_flag=True, help="The app refuses to start.")
@click.option("--pad-mb", default=0, type=click.IntRange(0, 512), help="Pad the artifact with incompressible bytes.")
@state_option
def build(build: str, error_rate: float, latency_ms: float, health_fail: bool, start_fail: bool, pad_mb: int,
          state_dir: Path | None) -> None:
    """Build a demo app artifact (tar.gz + sha256) for BUILD, optionally deliberately bad."""
    cfg = Sandbox(state_dir).config
    art = provision.artifact(cfg, build, Behaviour(error_rate, latency_ms, health_fail, start_fail), pad_mb=pad_mb)
    click.echo(f"{art.path}  sha256={art.sha256}")


@sandbox.command()
@click.argument("action", type=click.Choice(["start", "stop"]))
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(0.1, 500), help="Total requests/s.")
@click.option("--duration", default=600.0, show_default=True, type=click.FloatRange(1, 6 * 3600), help="Seconds.")
@click.option("--via-lb", is_flag=True, help="Send through HAProxy instead of to every node directly.")
@state_option
def load(action: str, rate: float, duration: float, via_lb: bool, state_dir: Path | None) -> None:
    """Start or stop the bounded background load generator."""
    cfg = Sandbox(state_dir).config
    if action == "stop":
        click.echo("load stopped" if services.stop_load(cfg) else "no load was running")
        return
    pid = services.start_load(cfg, rate=rate, duration=duration, via_lb=via_lb)
    click.echo(f"load started (pid {pid}): {rate:g} req/s for at most {duration:g} s")


def _show(st: SandboxStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"schema": "lrelease.sandbox.status/v1", **st.to_dict()}, indent=2))
        return
    if st.mode == "local":
        console.print("[bold yellow]LOCAL MODE[/]: nodes are directories on this machine with loopback ports; "
                      "no SSH, no network isolation, limited faults. Use root for the real sandbox.")
    nodes = table(f"sandbox ({st.mode}) {st.subnet}  deploy root {st.deploy_root}",
                  ("node", "address", "link", "ssh", "version", "health", "prometheus", "faults"))
    for n in st.nodes:
        nodes.add_row(
            n.name, n.address if st.mode == "netns" else f"{n.address}:{n.port}", _yn(n.link_up, "up", "down"), _yn(n.ssh, "ok", "-"),
            n.version or "-", _yn(n.healthy, "pass", "fail"), _yn(n.prometheus == "up", "up", n.prometheus),
            ", ".join(n.faults),
        )
    print_table(console, nodes)
    console.print(f"HAProxy {st.lb_url}: {'up' if st.haproxy else 'down'}   Prometheus {st.prometheus_url}: "
                  f"{'up' if st.prometheus else 'down'}   load: {'running' if st.load else 'stopped'}")
    console.print(f"inventory: {st.inventory}")


def _yn(ok: bool, yes: str, no: str) -> str:
    return f"[green]{yes}[/]" if ok else f"[red]{no}[/]"


COMMANDS = (sandbox,)

__all__ = ["COMMANDS", "sandbox", "SandboxError"]
