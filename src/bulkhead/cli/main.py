"""The `bulkhead` command: wires the sub-commands and maps errors to exit codes (0 ok, 1 bug, 2 user)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import typer

from bulkhead.lab.rauc_service import LabError
from bulkhead.osbuild import OsBuildError
from bulkhead.rauc import BundleError

from . import apps, backup, bundle, cra, delta, demo, image, lab, manage, osbuild, output, rollouts, security, security_log, vulns
from . import commands as commands_cmd
from . import metrics as metrics_cmd
from . import overlay as overlay_cmd
from . import remote as remote_cmd
from .errors import EXIT_BUG, EXIT_USER, CliError

# Help texts are plain text (they show brackets such as HOST:CONTAINER[/tcp|udp]): no rich markup in them, so
# that no help string can crash `--help` (tests/cli/test_help_and_errors.py runs every command's --help).
app = typer.Typer(
    help="Bulkhead: keep embedded Linux fleets secure and up to date.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(bundle.app, name="bundle")
app.add_typer(backup.app, name="backup")
app.add_typer(delta.app, name="delta")
app.add_typer(manage.tenant_app, name="tenant")
app.add_typer(manage.token_app, name="token")
app.add_typer(manage.keyring_app, name="keyring")
app.add_typer(manage.release_app, name="release")
app.add_typer(manage.device_app, name="device")
app.add_typer(manage.bootstrap_app, name="bootstrap")
app.add_typer(manage.user_app, name="user")
app.add_typer(apps.app_app, name="app")
app.add_typer(apps.group_app, name="group")
app.add_typer(lab.app, name="lab")
app.add_typer(image.app, name="image")
app.add_typer(osbuild.app, name="osbuild")
app.add_typer(rollouts.rollout_app, name="rollout")
app.add_typer(rollouts.ddi_app, name="ddi")
app.add_typer(vulns.vuln_app, name="vuln")
app.add_typer(vulns.vex_app, name="vex")
app.add_typer(cra.cra_app, name="cra")
app.add_typer(security.security_app, name="security")
app.add_typer(overlay_cmd.overlay_app, name="overlay")
apps.group_app.command("window")(rollouts.group_window)
manage.device_app.command("provision")(rollouts.device_provision)
manage.device_app.command("set")(apps.set_device_desired)
manage.device_app.command("events")(apps.device_events)
manage.device_app.command("security-log")(security_log.device_security_log)
manage.device_app.command("run")(commands_cmd.device_run)
manage.device_app.command("logs")(commands_cmd.device_logs)
manage.device_app.command("commands")(commands_cmd.device_commands)
manage.device_app.command("command")(commands_cmd.command_show)
manage.device_app.command("shell")(remote_cmd.device_shell)
manage.device_app.command("forward")(remote_cmd.device_forward)
manage.device_app.command("sessions")(remote_cmd.device_sessions)
manage.device_app.command("recording")(remote_cmd.device_recording)
app.command("remote-access")(remote_cmd.remote_access)
manage.device_app.command("metrics")(metrics_cmd.device_metrics)
app.add_typer(metrics_cmd.alert_app, name="alert")
cra.cra_app.command("security-events")(security_log.cra_security_events)
app.command("demo")(demo.demo)


@app.callback()
def root(
    ctx: typer.Context,
    server: str = typer.Option("http://127.0.0.1:8080", envvar="BULKHEAD_SERVER", help="Server URL"),
    token: str | None = typer.Option(None, envvar="BULKHEAD_TOKEN", help="API token"),
) -> None:
    ctx.obj = {"server": server, "token": token}


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8080, help="Port to listen on"),
    data_dir: Path = typer.Option(Path("bulkhead-data"), envvar="BULKHEAD_DATA_DIR", help="Data directory"),
    workers: int = typer.Option(1, min=1, help="Worker processes (PostgreSQL recommended above 1)"),
    log_level: str = typer.Option("info", help="critical, error, warning, info or debug"),
    http_server: str = typer.Option(
        "granian",
        envvar="BULKHEAD_HTTP_SERVER",
        help="granian (Rust HTTP, about 1.5x uvicorn's request rate on artifact ranges) or uvicorn",
    ),
    tls_cert: Path | None = typer.Option(
        None, envvar="BULKHEAD_TLS_CERT", help="Serve HTTPS with this PEM certificate (chain); needs --tls-key"
    ),
    tls_key: Path | None = typer.Option(None, envvar="BULKHEAD_TLS_KEY", help="The PEM private key of --tls-cert"),
    log_format: str = typer.Option(
        "text", envvar="BULKHEAD_LOG_FORMAT", help="text, or json: one JSON object per line with the request id"
    ),
    access_log: bool = typer.Option(
        False, "--access-log", envvar="BULKHEAD_ACCESS_LOG", help="Log every request (method, path, status, time)"
    ),
) -> None:
    """Run the server (SQLite in DATA_DIR unless BULKHEAD_DATABASE_URL is set).

    With --tls-cert and --tls-key it serves HTTPS itself (TLS 1.2 or newer); behind a TLS-terminating proxy,
    set BULKHEAD_PUBLIC_URL to the URL devices use (see docs/deployment.md).
    """
    from bulkhead.server.app import system_token
    from bulkhead.server.db import migrate
    from bulkhead.server.errors import SettingsError
    from bulkhead.server.settings import load_settings

    if http_server not in ("granian", "uvicorn"):
        raise CliError(f"--http-server must be granian or uvicorn, not {http_server!r}")
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise CliError(f"--log-level must be critical, error, warning, info or debug, not {log_level!r}")
    if log_format not in ("text", "json"):
        raise CliError(f"--log-format must be text or json, not {log_format!r}")
    tls = _tls_files(tls_cert, tls_key)
    try:
        settings = load_settings(data_dir=data_dir)
        token_file = settings.data_dir / "admin.token"
        system_token(settings.data_dir)
        output.err_console.print(
            f"bulkhead server on {'https' if tls else 'http'}://{host}:{port}  data: {settings.data_dir.resolve()}  "
            f"admin token: {token_file if token_file.exists() else 'BULKHEAD_ADMIN_TOKEN'}",
            markup=False,
        )
        migrate(settings.db_url)  # here, so that a database problem is one clear error, not one per worker
        os.environ["BULKHEAD_DATA_DIR"] = str(settings.data_dir)
        # Workers are new processes that read this at start: glibc keeps a malloc arena per thread (up to 8 per
        # core) and rarely gives their freed memory back; two arenas keep a worker's RSS near what it uses.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        os.environ["BULKHEAD_LOG_FORMAT"] = log_format
        if workers > 1:  # request metrics of every worker, summed by whichever worker answers a scrape
            from bulkhead.server.metrics import prepare_multiprocess

            prepare_multiprocess(settings.data_dir / "run")
    except SettingsError as exc:
        raise CliError(exc.message) from exc
    target = "bulkhead.server.app:factory"
    if http_server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        return
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.log import LogLevels

    Granian(
        target,
        factory=True,
        address=host,
        port=port,
        workers=workers,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=True,  # remote sessions (server/tunnel)
        log_level=LogLevels(log_level),
        log_access=access_log,
        ssl_cert=tls[0] if tls else None,
        ssl_key=tls[1] if tls else None,
        ssl_protocol_min=SSLProtocols.tls12,  # devices' TLS stacks are often older than TLS 1.3
    ).serve()


def _tls_files(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    """Both or neither; a pair that does not load is a clear error here, not a crash in every worker."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise CliError("--tls-cert and --tls-key go together: give the certificate and its private key")
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise CliError(f"TLS file not found: {exc.filename}") from exc
    except (ssl.SSLError, OSError) as exc:
        raise CliError(f"--tls-cert {cert} and --tls-key {key} do not load as a PEM certificate and its key: {exc}") from exc
    return cert.resolve(), key.resolve()


def run() -> None:
    """Console entry point with the exit-code contract."""
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(N) comes back as N here
        if isinstance(code, int) and code:
            sys.exit(code)
    except (CliError, BundleError, OsBuildError, LabError) as exc:
        output.error(str(exc))
        sys.exit(EXIT_USER)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(EXIT_USER)
    except SystemExit:
        raise
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.exceptions.TyperException as exc:  # usage errors, bad parameters
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            output.error(str(exc))
        sys.exit(EXIT_USER)
    except Exception as exc:
        output.error(repr(exc), label="internal error (a bug, please report it)")
        if os.environ.get("BULKHEAD_DEBUG"):
            traceback.print_exc()
        sys.exit(EXIT_BUG)
