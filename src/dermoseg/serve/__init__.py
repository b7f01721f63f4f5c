"""``dermoseg serve``: the REST API and web page on the same models and library functions as the CLI.

:func:`run` starts uvicorn on :func:`dermoseg.serve.app.create_app`; :mod:`dermoseg.serve.pipeline` is the
only module here that calls the models; :mod:`dermoseg.serve.settings` holds the limits.
Research tool, not a medical device.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import threading
from pathlib import Path

from dermoseg.errors import ConfigError
from dermoseg.serve.settings import CLASSIFIER_ENV, CONFIG_ENV, MODEL_ENV, TOKEN_ENV, WORKERS_ENV, load_settings


def is_loopback(host: str) -> bool:
    """True if ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, token: str | None = None,
        config: str | Path | None = None, banner: str = "", model: str | Path | None = None,
        classifier: str | Path | None = None) -> None:
    """Serve the API and page with uvicorn until interrupted.

    Parameters
    ----------
    host : address to bind; anything but loopback needs a token.
    port : TCP port (1–65535).
    workers : server processes (each loads the models and has its own work queue).
    token : bearer token for ``/v1`` routes; None takes :data:`~dermoseg.serve.settings.TOKEN_ENV`.
    config : YAML settings file merged over ``dermoseg/configs/serve.yaml``.
    banner : printed once every check has passed, just before the server starts.
    model : segmentation model (a file, or a shipped name: "default", "fast"); None: the shipped default.
    classifier : classifier file; None: the shipped one.

    Raises
    ------
    dermoseg.errors.ConfigError
        On a bad settings file, port or worker count, a port already in use, or a non-loopback ``host`` without a
        token.
    dermoseg.errors.ModelFileError
        If ``model`` or ``classifier`` is missing or not a dermoseg model of that kind (checked before starting).
    """
    import uvicorn

    from dermoseg import modelfile
    load_settings(config)  # stop here, with the message, on a bad settings file
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if token:
        os.environ[TOKEN_ENV] = token
    if not is_loopback(host) and not os.environ.get(TOKEN_ENV):
        raise ConfigError(f"--host {host} lets other machines in: give --token (or set {TOKEN_ENV}) as well")
    # the worker processes load the models; a given file is read here first, so a bad one stops the command
    for value, kind, env in ((model, "segmentation", MODEL_ENV), (classifier, "classifier", CLASSIFIER_ENV)):
        path = modelfile.read(value, kind)[0].resolve()
        _check_onnx_export(path)
        os.environ[env] = "" if value is None else str(path)
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    os.environ[WORKERS_ENV] = str(workers)  # each worker process takes its share of the CPUs (worker_threads)
    _check_port_free(host, port)
    if banner:
        print(banner, flush=True)
    if threading.current_thread() is threading.main_thread():  # uvicorn stops gracefully on SIGTERM and then
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # re-raises it: the process must end by it (status 143)
    uvicorn.run("dermoseg.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info")


def _check_onnx_export(model_path: Path) -> None:
    """Raise :class:`ConfigError` if an ONNX export lies beside ``model_path`` but was exported from another file
    (the workers would refuse it after the server had announced itself); no export is fine (PyTorch runs)."""
    from dermoseg.engine import onnx_path_for, stale_export
    advice = (f"serve runs a model on the ONNX export beside it: export it again (dermoseg export --model "
              f"{model_path} --out {onnx_path_for(model_path)}) or move that file away (the model then runs on "
              "PyTorch)")
    problem = stale_export(model_path, advice)
    if problem is not None:
        raise ConfigError(problem)


def _check_port_free(host: str, port: int) -> None:
    """Raise :class:`ConfigError` if ``host:port`` cannot be bound (in use, or not an address of this machine),
    before the models load; binds as uvicorn does (``SO_REUSEADDR``)."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        reason = "already in use; choose another --port" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        raise ConfigError(f"{host}:{port}: cannot listen there ({reason})") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServer:
    """``dermoseg serve`` in a child process on 127.0.0.1, for tests, benchmarks and notebooks.

    Use as a context manager: entering starts ``python -m dermoseg.cli serve`` on a free loopback port and waits
    until ``GET /health`` answers; leaving stops it (SIGINT, then SIGKILL after ``stop_timeout`` seconds).

    Parameters
    ----------
    args : extra ``dermoseg serve`` options (e.g. ``["--config", "limits.yaml"]``).
    env : extra environment variables for the child (e.g. ``{"OMP_NUM_THREADS": "1"}``).
    start_timeout : seconds to wait for the server to answer before giving up (RuntimeError, output attached).
    log : file object for the server's output; None: a temporary file, shown in the error if it fails to start.

    Attributes
    ----------
    url : ``http://127.0.0.1:<port>``.
    process : the :class:`subprocess.Popen` of the server.
    """

    def __init__(self, args: list[str] | None = None, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0, stop_timeout: float = 20.0, log=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.env = list(args or []), env or {}
        self.start_timeout, self.stop_timeout, self.log = start_timeout, stop_timeout, log
        self.process = None
        self._own_log = None

    def __enter__(self) -> "LocalServer":
        import subprocess
        import sys
        import tempfile
        import time
        import urllib.request
        if self.log is None:
            self.log = self._own_log = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "dermoseg.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               *self.args]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env})
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self._stop()
        output = ""
        if self.log.readable():
            self.log.seek(0)
            output = self.log.read()[-3000:]
        self.__exit__(None, None, None)
        raise RuntimeError(f"dermoseg serve did not start on {self.url}:\n{output}")

    def __exit__(self, *exc) -> None:
        self._stop()
        if self._own_log is not None:  # the temporary log this object opened
            self._own_log.close()
            self._own_log = self.log = None

    def _stop(self) -> None:
        import subprocess
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
