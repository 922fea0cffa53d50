"""Command line: `minerwatch serve` (the exporter), `minerwatch scan` (one pass, for a person)."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import List, Optional

import click

from minerwatch import __version__, logs, service
from minerwatch.app import Clocks, Options, build_collectors, build_context, build_registry, enabled_collectors
from minerwatch.config import ConfigError
from minerwatch.collectors import available
from minerwatch.collectors.base import DEFAULT_TIMEOUT, CollectorRunner
from minerwatch.options import FiniteFloatRange, state_dir_option
from minerwatch.text import host_text

DEFAULT_PORT = 9789
log = logging.getLogger("minerwatch")


def common_options(func):
    """Options that `serve` and `scan` share: where to read the host, which collectors, the config."""
    for name, cls in reversed(list(available().items())):
        state = "on" if cls.default_enabled else "off"
        func = click.option(
            f"--collector.{name}/--no-collector.{name}",
            f"collector_{name}",
            default=cls.default_enabled,
            help=f"{cls.help} (default {state})",
        )(func)
    options = [
        click.option("--config.file", "config_file", type=click.Path(dir_okay=False),
                     help="YAML configuration: extra signatures, allowlist, thresholds, IOC files."),
        click.option("--collector.disable-defaults", "disable_defaults", is_flag=True,
                     help="Turn off every collector not explicitly enabled with --collector.<name>."),
        click.option("--collector.process.top-k", "top_k", type=click.IntRange(min=0),
                     help="Busiest processes exported whatever their name (default 5)."),
        click.option("--collector.process.max-suspects", "max_suspects", type=click.IntRange(min=0),
                     help="Cap on suspect processes exported one by one (default 20)."),
        click.option("--path.procfs", "procfs", default="/proc", show_default=True, help="procfs mountpoint."),
        click.option("--path.sysfs", "sysfs", default="/sys", show_default=True, help="sysfs mountpoint."),
        click.option("--path.rootfs", "rootfs", default="/", show_default=True,
                     help="rootfs mountpoint: where the host's configuration files are (antivirus exclusions)."),
        click.option("--process.reader", "reader", type=click.Choice(["auto", "procfs", "psutil"]),
                     default="auto", show_default=True,
                     help="How processes are read: /proc directly (Linux) or psutil (any OS)."),
        click.option("--log.level", "log_level", type=click.Choice(list(logs.LEVELS)), default="info",
                     show_default=True, help="Only log messages with the given severity or above."),
        click.option("--log.format", "log_format", type=click.Choice(["logfmt", "json"]), default="logfmt",
                     show_default=True, help="Output format of log messages."),
    ]
    for option in reversed(options):
        func = option(func)
    return state_dir_option(func)


def make_options(ctx: click.Context, params: dict) -> Options:
    collectors = {}
    for name in available():
        key = f"collector_{name}"
        # Only a flag the user gave overrides --collector.disable-defaults.
        if ctx.get_parameter_source(key) != click.core.ParameterSource.DEFAULT:
            collectors[name] = params[key]
    return Options(
        config_file=params["config_file"],
        procfs=params["procfs"],
        sysfs=params["sysfs"],
        rootfs=params["rootfs"],
        state_dir=params["state_dir"],
        collectors=collectors,
        disable_defaults=params["disable_defaults"],
        top_k=params["top_k"],
        max_suspects=params["max_suspects"],
        reader=params["reader"],
        clocks=ctx.find_object(Clocks) or Clocks(),
    )


class LazyGroup(click.Group):
    """A group whose commands in modules of their own are imported only when invoked (or listed
    by --help): `serve` then never loads them, which keeps their imports out of its memory."""

    # name -> (module, attribute): evidence bundles (and `evidence verify`), the report an
    # investigator takes from Prometheus's history, the central pool resolver
    lazy = {
        "evidence": ("minerwatch.investigation.evidence", "evidence"),
        "report": ("minerwatch.investigation.report", "report"),
        "resolve-pools": ("minerwatch.network.resolve", "resolve_pools"),
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in self.lazy:
            module, attribute = self.lazy[name]
            command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="minerwatch", message="%(prog)s %(version)s")
def cli():
    """minerwatch: catch cryptocurrency miners on this host and expose them to Prometheus."""


@cli.command()
@click.option("--web.listen-address", "listen_address", default=f":{DEFAULT_PORT}", show_default=True,
              help="Address on which to expose metrics and the web interface.")
@click.option("--web.telemetry-path", "telemetry_path", default="/metrics", show_default=True,
              help="Path under which to expose metrics.")
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False),
              help="Path to a web configuration file that can enable TLS or basic authentication "
                   "(exporter-toolkit format).")
@click.option("--web.max-requests", "max_requests", type=click.IntRange(min=0), default=40, show_default=True,
              help="Most scrapes served at once; more get HTTP 503 (0: no limit). Scrapes that arrive "
                   "together share one collection.")
@click.option("--web.max-connections", "max_connections", type=click.IntRange(min=0), default=256,
              show_default=True,
              help="Most HTTP connections open at once (0: no limit; at most 500 on Windows). A new one at "
                   "the limit takes the place of the connection that has waited longest for a request; "
                   "if all are being answered, it gets HTTP 503.")
@click.option("--collector.timeout", "collector_timeout", type=FiniteFloatRange(min=0.1, max=300),
              default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds each collector may take per scrape; one still running then is reported "
                   "failed (minerwatch_scrape_collector_success 0) for that scrape.")
@common_options
@click.pass_context
def serve(ctx, listen_address, telemetry_path, web_config_file, max_requests, max_connections, collector_timeout,
          **params):
    """Run the exporter. SIGHUP reloads --config.file and --web.config.file."""
    from minerwatch import memory
    from minerwatch.serving import web  # here: `scan` never loads the HTTP server

    logs.setup(params["log_level"], params["log_format"])
    memory.limit_malloc_arenas()  # before threads start: flat memory under many connections
    memory.fix_mmap_threshold()  # flat memory however many processes a scan builds blocks for
    # First, before any thread starts: a SIGTERM or SIGHUP during start-up must not kill us. A
    # caller that runs `serve` in a thread of its own (the Windows service) brings its own source.
    given = ctx.find_object(service.SignalSource)
    signals = given if given is not None else service.SignalQueue.install()
    try:
        address = web.parse_listen_address(listen_address)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--web.listen-address'")
    if not telemetry_path.startswith("/") or telemetry_path == "/":
        raise click.BadParameter("must start with / and not be / itself", param_hint="'--web.telemetry-path'")
    if sys.platform == "win32" and not 0 < max_connections <= web.WINDOWS_MAX_CONNECTIONS:
        # select(), the only selector there, watches at most 512 sockets
        raise click.BadParameter(f"must be from 1 to {web.WINDOWS_MAX_CONNECTIONS} on Windows",
                                 param_hint="'--web.max-connections'")
    options = make_options(ctx, params)
    web_config = web.load_web_config(web_config_file)
    context = build_context(options)
    runner = CollectorRunner(build_collectors(context, enabled_collectors(options)), timeout=collector_timeout,
                             context=context)
    try:
        registry = build_registry(runner)
        status = service.ReloadStatus()
        registry.register(status)
        try:
            server = web.ExporterServer(address, registry, telemetry_path, web_config, __version__,
                                        max_requests=max_requests, max_connections=max_connections)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {listen_address}: {exc.strerror}")
    except BaseException:
        runner.close()
        raise
    memory.release_free_memory()  # what start-up freed (YAML, data files) goes back: about 1 MiB
    log.info(
        "listening on %s%s (collectors: %s, TLS: %s, basic auth: %s)",
        listen_address, telemetry_path, ",".join(c.name for c in runner.collectors),
        "on" if web_config.tls else "off", "on" if web_config.users else "off",
    )
    service.Service(server, runner, options, web_config_file, status, web.load_web_config).run(signals)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@click.option("--interval", type=FiniteFloatRange(min=0, max=3600), default=2.0, show_default=True,
              help="Seconds between the two passes that measure recent CPU use.")
@common_options
@click.pass_context
def scan(ctx, as_json, interval, **params):
    """One pass over the host: print suspect processes; exit 1 if there are any."""
    from minerwatch.investigation import scan as scan_module  # here: `serve` never loads it

    logs.setup(params["log_level"], params["log_format"])
    options = make_options(ctx, params)
    context = build_context(options)
    collectors = build_collectors(context, enabled_collectors(options))
    try:
        report = scan_module.run(context, interval)
    finally:
        for collector in collectors:
            collector.close()
    click.echo(scan_module.render_json(report) if as_json else scan_module.render_table(report))
    ctx.exit(1 if report.suspects else 0)


class _GivenSignals(service.SignalSource):
    """Wraps a caller's object with `wait(timeout)` so `serve` finds it in click's context."""

    def __init__(self, source):
        self._source = source

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        return self._source.wait(timeout)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def serve_argv(argv: List[str], signals) -> None:
    """Run `minerwatch serve ARGV` in the calling thread, taking signals from `signals` (an
    object whose `wait(timeout)` returns a signal number or None) instead of the OS's.

    For callers whose thread cannot install signal handlers (a Windows service's body). Bad
    flags raise click's UsageError, a bad config ConfigError; a clean stop returns.
    """
    source = signals if isinstance(signals, service.SignalSource) else _GivenSignals(signals)
    cli.main(args=["serve", *argv], prog_name="minerwatch", standalone_mode=False, obj=source)


def main(argv=None, obj=None) -> None:
    """Entry point: every error in flags or config is one line on stderr and exit status 2.
    `obj` becomes click's context object (`Clocks` to fix the clocks, for the golden test)."""
    try:
        code = cli.main(args=argv, prog_name="minerwatch", standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"minerwatch: error: {exc.format_message()}{hint}", err=True)
        code = 2
    except ConfigError as exc:
        # The message quotes the file and its keys: escaped so it stays one printable line.
        click.echo(f"minerwatch: error: {host_text(str(exc))}", err=True)
        code = 2
    except click.ClickException as exc:
        click.echo(f"minerwatch: error: {exc.format_message()}", err=True)
        code = 1
    except click.exceptions.Abort:
        code = 130
    sys.exit(code or 0)
