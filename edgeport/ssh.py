"""Run a command on another machine with the system OpenSSH client: host keys checked, never a prompt, a deadline.

Why the `ssh` binary rather than an SSH library (asyncssh, paramiko): the user's keys, agent, ~/.ssh/config
(aliases, ProxyJump, ports, IdentityFile) and known_hosts then work exactly as in their shell, and nothing is
added to the runtime's dependencies. What this module adds is what a program needs around it: a deadline and a
cancel (the local ssh is killed with its process group), standard input fed while output is read, stderr lines
as they come (progress), and ssh's own failures turned into one-line reasons.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SSH_FAILED = 255  # ssh's exit code for its own errors (any other code is the remote command's)


class SshError(Exception):
    """The remote command could not run; the message is the reason, one line."""


class SshTimeout(SshError):
    """The deadline passed; the local ssh was killed."""


class SshCancelled(SshError):
    """The caller cancelled (Ctrl-C); the local ssh was killed."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str | None = None  # None: ssh's default (~/.ssh/config, then the local user name)
    port: int | None = None  # None: ssh's default (~/.ssh/config, then 22)
    ssh_config: str | None = None  # ssh -F FILE; None: the user's own configuration
    insecure_accept_host_key: bool = False  # accept any host key, record none (StrictHostKeyChecking=no)
    connect_timeout_s: int = 20  # TCP connect and SSH handshake

    @property
    def where(self) -> str:
        return self.host + (f" port {self.port}" if self.port else "")

    def argv(self) -> list[str]:
        """The ssh command line up to the destination: BatchMode (never a prompt), host keys strictly checked."""
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.insecure_accept_host_key:
            opts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        else:
            opts += ["-o", "StrictHostKeyChecking=yes"]
        if self.ssh_config:
            opts = ["-F", str(self.ssh_config), *opts]
        if self.port is not None:
            opts += ["-p", str(self.port)]
        if self.user:
            opts += ["-l", self.user]
        return ["ssh", *opts, "--", self.host]


def run(target: SshTarget, remote_argv: list[str], deadline: float, cancel: threading.Event | None = None,
        stdin: bytes | None = None, on_line: Callable[[str], None] | None = None) -> tuple[int, str, str]:
    """Run `remote_argv` (each word quoted for the remote shell) and return (exit code, stdout, stderr).

    `deadline` is a time.monotonic() value; passing it, or `cancel` being set, kills the local ssh and raises
    SshTimeout / SshCancelled. ssh's own failures (exit 255) raise SshError with the reason."""
    cmd = [*target.argv(), " ".join(quote(a) for a in remote_argv)]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise SshError("the OpenSSH client `ssh` is not installed on this machine") from None
    out: list[bytes] = []
    err: list[str] = []

    def feed():
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except OSError:  # the remote side stopped reading: its exit code and stderr say why
            pass

    def read_err():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            err.append(line)
            if on_line is not None:
                on_line(line)

    threads = [threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    if stdin is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for t in threads:
        t.start()
    stopped: SshError | None = None
    while proc.poll() is None:
        if cancel is not None and cancel.is_set():
            stopped = SshCancelled("interrupted (Ctrl-C)")
        elif time.monotonic() > deadline:
            stopped = SshTimeout("timed out")
        if stopped is not None:
            _kill(proc)
            break
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    for t in threads:
        t.join(timeout=5)
    if stopped is not None:
        raise stopped
    stdout, stderr = (out[0] if out else b"").decode("utf-8", "replace"), "".join(err)
    if proc.returncode == SSH_FAILED:
        raise SshError(reason(stderr, target))
    return proc.returncode, stdout, stderr


def _kill(proc: subprocess.Popen) -> None:
    """Stop a local ssh and what it started (its own process group), politely then firmly."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


KNOWN_FAILURES = [  # (what ssh prints, lower case; the reason, with {where}); the first match wins
    ("remote host identification has changed", "the host key of {where} does not match known_hosts (it changed, "
     "or someone is in between); check the device, then update known_hosts (ssh-keygen -R)"),
    ("host key is known for", "the host key of {where} is not in known_hosts; connect once with ssh to check and "
     "accept it (or pass --insecure-accept-host-key)"),
    ("host key verification failed", "host key verification failed for {where}"),
    ("connection refused", "connection refused by {where} (no SSH server listening there?)"),
    ("could not resolve hostname", "host name of {where} not found"),
    ("timed out", "connection to {where} timed out (device down or unreachable?)"),
    ("no route to host", "no route to {where} (device down or on another network?)"),
    ("network is unreachable", "network unreachable for {where}"),
    ("permission denied", "login to {where} refused (permission denied): set up key login, e.g. ssh-copy-id, "
     "and load the key in your agent"),
]


def reason(stderr: str, target: SshTarget) -> str:
    """One line saying why ssh could not run the command, from its own messages."""
    text = stderr.lower()
    for needle, why in KNOWN_FAILURES:
        if needle in text:
            return why.format(where=target.where)
    return f"ssh to {target.where} failed: {last_line(stderr, SSH_FAILED)}"


def last_line(stderr: str, rc: int) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"exit code {rc}"


def quote(arg: str) -> str:
    """Quote one word for the remote shell; a leading ~/ stays expandable (a Python under the user's home)."""
    if arg.startswith("~/"):
        return '"$HOME"/' + shlex.quote(arg[2:])
    return shlex.quote(arg)
