"""The Python tool: runs model-written code in a separate, limited process (:class:`PythonSandbox`).

Each call starts a fresh interpreter (``python -I -B``, isolated mode: no ``PYTHON*`` variables, no
user site, no current directory on ``sys.path``) in a new session, with a fixed environment (nothing
inherited from the trainer), stdin closed and a new scratch directory as its working directory,
deleted afterwards. Its stdout and stderr are read through pipes, at most ``max_output_bytes`` of
each (the process is killed beyond that), until the wall-clock timeout, when the whole process
group is killed.

Layers, from the strongest (see docs/sandbox.md for what each does and does not protect):

1. Linux namespaces, where ``unshare`` is permitted (root, or unprivileged user namespaces): a new
   network namespace (no interface but a down loopback: no network at all) and a new PID namespace
   (every process the code starts dies with it). Probed once per process; ``isolation`` says which.
2. Resource limits set in the child before the code runs: CPU seconds, address space
   (``memory_mb``), process count, file size, open files, no core dumps.
3. When the trainer runs as root: the child drops to the unprivileged user ``nobody`` (no
   supplementary groups, ``no_new_privs``), so file permissions apply and the process-count limit
   binds (it does not for root), bounding a fork bomb.
4. An audit hook (:func:`sys.addaudithook`) in the child that refuses opening files outside the
   scratch directory (reads of the interpreter's own library directories excepted), process
   creation (``os.system``, ``subprocess``, ``fork``, ``exec``, ``spawn``), sockets, ``ctypes`` and
   introspection that could reach the hook's state. This layer is bypassable from Python itself; it
   gives a clear ``forbidden`` error for honest mistakes and attempts, the layers above are the
   boundary.
"""

from __future__ import annotations

import json
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from lightning_grpo.environments.tool import Tool
from lightning_grpo.environments.tool_result import ToolResult

MAX_SOURCE_BYTES = 65_536  # one argv string; Linux allows 131,072
MAX_PROCESSES = 32  # RLIMIT_NPROC: processes and threads of the sandbox user, all sandboxes together
MAX_FILE_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: largest file the code may write
MAX_OPEN_FILES = 64  # RLIMIT_NOFILE
STDERR_TAIL_CHARS = 1_000  # how much of stderr (a traceback's end) goes back to the model
SANDBOX_USER = "nobody"
MAX_STDERR_BYTES = 1024 * 1024  # stderr is read as a ring of its last max_output_bytes, at most this much in all
# Imported before the user changes: the interpreter's files may be unreadable to ``nobody`` (a pyenv
# under /root); then these are all the code can import. ``socket`` and ``subprocess`` are here so
# that using them is a clear ``forbidden`` (the hook sees the call) rather than an ImportError.
PREIMPORTED = (
    "math cmath fractions decimal statistics itertools functools collections random re json string heapq "
    "bisect operator numbers array struct copy dataclasses typing enum contextlib textwrap datetime time "
    "traceback linecache socket subprocess encodings.idna"
).split()
_EXIT_MEMORY, _EXIT_FORBIDDEN, _EXIT_SYNTAX, _EXIT_SETUP = 90, 91, 92, 93
_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# The child's first code (``python -I -B -c _BOOTSTRAP CONFIG SOURCE``): limits, user, hook, then
# the model's code. Runs as the trainer's user until the drop; imports what the code may use first
# (after the drop, the interpreter's files may be unreadable to ``nobody``).
_BOOTSTRAP = r"""
import json, os, resource, signal, sys
config = json.loads(sys.argv[1])
source = sys.argv[2]
sys.argv = ["<python>"]
def _setup_failed(message):
    sys.stderr.write("sandbox setup failed: " + message + "\n")
    sys.stderr.flush()
    os._exit(%(setup)d)
try:
    for _name in config["preimport"]:
        try:
            __import__(_name)
        except ImportError:
            pass
    import linecache, traceback
    try:  # no_new_privs: no setuid binary can raise privileges again, even past the hook
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)
    except Exception:
        pass
    for _module in [m for m in sys.modules if m in ("ctypes", "_ctypes") or m.startswith("ctypes.")]:
        del sys.modules[_module]
    _ctypes = ctypes = None
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_s"], config["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"], config["file_bytes"]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-large write fails with an error instead
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["open_files"], config["open_files"]))
    if config["memory_bytes"] is not None:
        resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"], config["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"], config["processes"]))  # binds non-root only
    if config["uid"] is not None:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
        if os.getuid() != config["uid"] or os.geteuid() != config["uid"]:
            _setup_failed("the user did not change")
    os.chdir(config["scratch"])
    os.umask(0o077)
except SystemExit:
    raise
except BaseException as _exc:
    _setup_failed(type(_exc).__name__ + ": " + str(_exc))

_violations = []
if config["audit_hook"]:
    def _install(scratch, read_roots, denied_events, denied_prefixes, denied_modules):
        realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        write_events = frozenset((
            "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
            "os.link", "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "os.chflags",
            "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
        ))
        read_events = frozenset(("os.listdir", "os.scandir", "os.getxattr", "os.listxattr"))

        def inside(path, root):
            return path == root or path.startswith(root.rstrip(sep) + sep)

        def allowed(path, writing):
            if path is None or isinstance(path, int):
                return True  # an open file descriptor: it was checked when it was opened
            try:
                real = realpath(fsdecode(path))
            except Exception:
                return False
            if inside(real, scratch):
                return True
            return not writing and any(inside(real, root) for root in read_roots)

        def deny(what):
            message = "forbidden in the sandbox: " + what
            _violations.append(message)
            raise PermissionError(message)

        def hook(event, args):
            if event == "open":
                path, mode, flags = (tuple(args) + (None, None, None))[:3]
                writing = bool(isinstance(mode, str) and any(c in mode for c in "wax+"))
                writing = writing or bool(isinstance(flags, int) and flags & write_flags)
                if not allowed(path, writing):
                    deny("open(%%r%%s)" %% (path, ", writing" if writing else ""))
            elif event in write_events:
                for path in args[:2]:
                    if isinstance(path, (str, bytes)) and not allowed(path, True):
                        deny("%%s(%%r)" %% (event, path))
            elif event in read_events:
                if args and not allowed(args[0], False):
                    deny("%%s(%%r)" %% (event, args[0]))
            elif event == "import":
                if args and args[0] in denied_modules:
                    deny("import " + str(args[0]))
            elif event in denied_events or event.startswith(denied_prefixes):
                deny(event)

        sys.addaudithook(hook)

    _install(
        os.path.realpath(config["scratch"]),
        tuple(sorted({os.path.realpath(p) for p in sys.path if p and os.path.isabs(p)})),
        frozenset((
            "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
            "os.killpg", "subprocess.Popen", "pty.spawn", "resource.setrlimit", "resource.prlimit",
            "sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
            "gc.get_referents", "code.__new__", "function.__new__", "cpython.PyInterpreterState_New",
            "os.startfile", "webbrowser.open",
        )),
        ("socket.", "ctypes.", "urllib.", "http.", "ftplib.", "smtplib.", "telnetlib.", "poplib.", "imaplib."),
        frozenset(("ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi", "_testinternalcapi")),
    )
    del _install
    # subprocess keeps the unaudited fork_exec as an attribute; the import statement is denied above
    sys.modules.pop("_posixsubprocess", None)
    if "subprocess" in sys.modules:
        sys.modules["subprocess"]._posixsubprocess = None

def _finish(status):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(status)

def _report(exc):
    tb = exc.__traceback__
    tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # skip the bootstrap's frame
    traceback.print_exception(type(exc), exc, tb)

try:
    linecache.cache["<python>"] = (len(source), None, source.splitlines(True), "<python>")
    _code = compile(source, "<python>", "exec")
except MemoryError:
    os._exit(%(memory)d)
except (SyntaxError, ValueError) as _exc:
    traceback.print_exception(type(_exc), _exc, None)
    _finish(%(syntax)d)
_namespace = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(_code, _namespace)
except MemoryError:
    os._exit(%(memory)d)
except SystemExit as _exc:
    if _exc.code not in (None, 0):
        sys.stderr.write("SystemExit: %%s\n" %% (_exc.code,))
        _finish(%(forbidden)d if _violations else 1)
except BaseException as _exc:
    if _violations:
        sys.stderr.write(_violations[0] + "\n")
        _finish(%(forbidden)d)
    try:
        _report(_exc)
    except MemoryError:
        os._exit(%(memory)d)
    _finish(1)
if _violations:
    sys.stderr.write(_violations[0] + "\n")
    _finish(%(forbidden)d)
_finish(0)
""" % {"memory": _EXIT_MEMORY, "forbidden": _EXIT_FORBIDDEN, "syntax": _EXIT_SYNTAX, "setup": _EXIT_SETUP}

_PROBES: dict[tuple[int, str], tuple[tuple[str, ...], str]] = {}
_PROBE_LOCK = threading.Lock()


def _namespace_prefix() -> tuple[tuple[str, ...], str]:
    """The ``unshare`` command line that puts the child in new network and PID namespaces, and a
    description; ``()`` where neither works here. Probed once per process (and user)."""
    key = (os.geteuid(), sys.executable)
    with _PROBE_LOCK:
        if key not in _PROBES:
            _PROBES[key] = _probe_namespaces()
        return _PROBES[key]


def _probe_namespaces() -> tuple[tuple[str, ...], str]:
    unshare = shutil.which("unshare") if sys.platform.startswith("linux") else None
    if unshare is None:
        return (), "no namespaces (no unshare command on this platform)"
    kill = ("--pid", "--fork", "--kill-child")
    candidates = [((unshare, "--net", *kill), "network and PID namespaces")]
    if os.geteuid() != 0:
        candidates.insert(0, ((unshare, "--user", "--map-root-user", "--net", *kill), "user, network and PID namespaces"))
    candidates.append(((unshare, "--net"), "network namespace (no PID namespace)"))
    reasons = []
    for prefix, description in candidates:
        try:
            probe = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", "pass"], stdin=subprocess.DEVNULL,
                capture_output=True, timeout=10, env=_ENVIRONMENT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(str(exc))
            continue
        if probe.returncode == 0:
            return prefix, description
        reasons.append(probe.stderr.decode(errors="replace").strip().splitlines()[-1:][0] if probe.stderr else f"exit {probe.returncode}")
    return (), f"no namespaces (unshare refused: {reasons[0] if reasons else 'unknown'})"


def _sandbox_user() -> tuple[int, int] | None:
    """(uid, gid) to drop to: ``nobody`` when running as root, else None (already unprivileged)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


_LOST_STATUS = -1  # no wait status is negative


def _exit_code(status: int) -> int:
    return -1 if status == _LOST_STATUS else os.waitstatus_to_exitcode(status)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class PythonSandbox(Tool):
    """Runs Python source in a limited child process and returns its output as a :class:`ToolResult`.

    ``timeout_s``: wall-clock limit per call, then the process group is killed (``timeout``).
    ``cpu_s``: CPU-time limit (``cpu``). ``memory_mb``: address-space limit (``memory``).
    ``max_output_bytes``: most bytes read from stdout, and from stderr (``output_limit`` beyond).
    ``max_parallel``: calls :meth:`run_many` runs at once. ``enabled``: False makes every call
    return a ``disabled`` error without starting anything. ``audit_hook``: the in-process second
    layer (see the module docstring); turn off only to test the OS-level layers alone.
    Plain values only: picklable and buildable from YAML.
    """

    name = "python"
    argument = "code"  # in a JSON tool call
    description = (
        "Run a short Python 3 program and get back what it prints (stdout); no network, no files "
        "outside its working directory, limited time and memory. Use print() to see a value."
    )

    def __init__(
        self,
        timeout_s: float = 5.0,
        cpu_s: float = 5.0,
        memory_mb: int = 512,
        max_output_bytes: int = 4096,
        max_parallel: int = 2,
        enabled: bool = True,
        audit_hook: bool = True,
    ) -> None:
        for label, value in (("timeout_s", timeout_s), ("cpu_s", cpu_s)):
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value!r}")
        if memory_mb < 32:
            raise ValueError(f"memory_mb must be at least 32 (the interpreter needs it), got {memory_mb!r}")
        if max_output_bytes < 1:
            raise ValueError(f"max_output_bytes must be at least 1, got {max_output_bytes!r}")
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel!r}")
        self.timeout_s = float(timeout_s)
        self.cpu_s = float(cpu_s)
        self.memory_mb = int(memory_mb)
        self.max_output_bytes = int(max_output_bytes)
        self.max_parallel = int(max_parallel)
        self.enabled = bool(enabled)
        self.audit_hook = bool(audit_hook)

    @property
    def isolation(self) -> str:
        """The layers active on this machine, in words (for logs and docs)."""
        if not self.enabled:
            return "disabled"
        _, namespaces = _namespace_prefix()
        user = _sandbox_user()
        layers = ["separate process", "rlimits (cpu, address space, processes, file size, open files)"]
        layers.append(f"uid {user[0]} ({SANDBOX_USER})" if user is not None else f"uid {os.geteuid()} (unprivileged already)")
        layers.append(namespaces)
        layers.append("audit hook" if self.audit_hook else "no audit hook")
        return "; ".join(layers)

    def run(self, source: str) -> ToolResult:
        """Run ``source``; its stdout (and the tail of its stderr), or a one-line error. Never raises."""
        start = time.monotonic()
        if not self.enabled:
            return ToolResult("the python tool is disabled", "disabled", 0.0)
        try:
            text, error = self._run(source, start)
        except Exception as exc:  # noqa: BLE001 - a tool never raises into the rollout
            text, error = f"the sandbox failed: {type(exc).__name__}: {exc}", "error"
        return ToolResult(text, error, time.monotonic() - start)

    def run_many(self, sources: list[str]) -> list[ToolResult]:
        """One result per source, in order; at most ``max_parallel`` children at once."""
        sources = list(sources)
        if len(sources) <= 1 or self.max_parallel == 1:
            return [self.run(source) for source in sources]
        with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(sources)), thread_name_prefix="sandbox") as pool:
            return list(pool.map(self.run, sources))

    def close(self) -> None:
        """Nothing persistent to release: each call's process and scratch directory are gone when it returns."""

    # -----------------------------------------------------------------------------------------

    def _run(self, source: str, start: float) -> tuple[str, str | None]:
        if not isinstance(source, str):
            return f"expected Python source as text, got {type(source).__name__}", "syntax"
        size = len(source.encode("utf-8", "surrogatepass"))
        if size > MAX_SOURCE_BYTES:
            return f"program too long ({size} bytes, at most {MAX_SOURCE_BYTES})", "error"
        if "\x00" in source:
            return "SyntaxError: source code cannot contain null bytes", "syntax"
        prefix, _ = _namespace_prefix()
        user = _sandbox_user()
        scratch = tempfile.mkdtemp(prefix="lightning_grpo_sandbox_")
        try:
            if user is not None:
                os.chown(scratch, *user)
            config = {
                "scratch": scratch,
                "cpu_s": self._cpu_limit(),
                "memory_bytes": self.memory_mb * 1024 * 1024,
                "file_bytes": MAX_FILE_BYTES,
                "open_files": MAX_OPEN_FILES,
                "processes": MAX_PROCESSES,
                "uid": None if user is None else user[0],
                "gid": None if user is None else user[1],
                "audit_hook": self.audit_hook,
                "preimport": PREIMPORTED,
            }
            command = [*prefix, sys.executable, "-I", "-B", "-c", _BOOTSTRAP, json.dumps(config), source]
            environment = dict(_ENVIRONMENT, HOME=scratch, TMPDIR=scratch)
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=environment, cwd=scratch, start_new_session=True, close_fds=True,
            )
            try:
                return self._collect(process, start)
            finally:
                _kill_group(process.pid)
                for stream in (process.stdout, process.stderr):
                    stream.close()
                if process.returncode is None:
                    try:
                        _, status, _ = os.wait4(process.pid, 0)
                    except ChildProcessError:
                        status = _LOST_STATUS
                    process.returncode = _exit_code(status)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _collect(self, process: subprocess.Popen, start: float) -> tuple[str, str | None]:
        """Read both pipes (bounded) until the child is gone or a limit is hit; classify the end."""
        limit = self.max_output_bytes
        deadline = start + self.timeout_s
        stdout_fd, stderr_fd = process.stdout.fileno(), process.stderr.fileno()
        buffers = {stdout_fd: bytearray(), stderr_fd: bytearray()}
        stderr_total = 0
        selector = selectors.DefaultSelector()
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        status = rusage = None
        stopped: str | None = None
        try:
            while stopped is None:
                if status is None:
                    try:
                        pid, raw_status, raw_rusage = os.wait4(process.pid, os.WNOHANG)
                    except ChildProcessError:  # reaped by someone else's waitpid(-1): status unknown
                        pid, raw_status, raw_rusage = process.pid, _LOST_STATUS, None
                    if pid:
                        status, rusage = raw_status, raw_rusage
                        process.returncode = _exit_code(status)
                        _kill_group(process.pid)  # whatever it left behind holds the pipes open
                remaining = deadline - time.monotonic()
                if not selector.get_map():
                    if status is not None:
                        break
                    if remaining <= 0:
                        stopped = "timeout"
                        break
                    time.sleep(min(0.005, remaining))
                    continue
                if remaining <= 0:
                    stopped = "timeout"
                    break
                for key, _ in selector.select(min(0.1, remaining)):
                    buffer = buffers[key.fd]
                    if key.fd == stdout_fd:  # the first `limit` bytes, and one more to know it overflowed
                        chunk = os.read(key.fd, min(65_536, limit + 1 - len(buffer)))
                    else:  # a ring of the last `limit` bytes (a traceback's end), MAX_STDERR_BYTES in all
                        chunk = os.read(key.fd, 65_536)
                        stderr_total += len(chunk)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    buffer += chunk
                    if key.fd != stdout_fd:
                        del buffer[:-limit]
                    if len(buffer) > limit or stderr_total > MAX_STDERR_BYTES:
                        stopped = "output_limit"
                        break
        finally:
            selector.close()
        stdout = bytes(buffers[stdout_fd][:limit]).decode("utf-8", "replace")
        stderr = bytes(buffers[stderr_fd]).decode("utf-8", "replace")
        if stopped == "timeout":
            return f"timed out: the program ran longer than {self.timeout_s:g} s (wall clock) and was stopped", "timeout"
        if stopped == "output_limit":
            stream = "stdout" if len(buffers[stdout_fd]) > limit else "stderr"
            amount = f"more than {limit} bytes" if stream == "stdout" else f"more than {MAX_STDERR_BYTES} bytes"
            return f"output limit: the program printed {amount} to {stream} and was stopped; print less", "output_limit"
        if status == _LOST_STATUS:
            return "crashed: the worker's exit status was lost (reaped by another part of the program)", "crashed"
        return self._classify(_exit_code(status), rusage, stdout, stderr)

    def _cpu_limit(self) -> int:
        """RLIMIT_CPU counts whole seconds."""
        return max(1, round(self.cpu_s))

    def _classify(self, code: int, rusage, stdout: str, stderr: str) -> tuple[str, str | None]:
        # unshare (the child's parent in namespaces) says so when its child died by a signal it then
        # fails to re-raise on itself; its own lines are not the program's output
        unshare_lines = [line for line in stderr.splitlines() if line.startswith("unshare: ")]
        stderr = "".join(line for line in stderr.splitlines(True) if not line.startswith("unshare: "))
        last_line = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        if code == 0:
            tail = stderr[-STDERR_TAIL_CHARS:].strip()
            return (stdout + ("\n" if stdout and not stdout.endswith("\n") else "") + tail if tail else stdout), None
        if code == _EXIT_MEMORY or (code == 1 and last_line.startswith("MemoryError")):
            return f"memory limit: the program needed more than {self.memory_mb} MB (MemoryError)", "memory"
        if code == _EXIT_FORBIDDEN:
            return last_line or "forbidden in the sandbox", "forbidden"
        if code == _EXIT_SYNTAX:
            return stderr.strip()[-STDERR_TAIL_CHARS:] or "SyntaxError", "syntax"
        if code == _EXIT_SETUP:
            return last_line or "sandbox setup failed", "error"
        # the kernel stops a process at the CPU limit with SIGXCPU (SIGKILL a second later); unshare,
        # its parent, reports that as its own death by the signal or as a failure of its own
        cpu = rusage.ru_utime + rusage.ru_stime if rusage is not None else 0.0
        if cpu >= self._cpu_limit() - 0.05 or code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return f"CPU limit: the program used more than {self._cpu_limit()} s of CPU time and was stopped", "cpu"
        signal_number = -code if code < 0 else code - 128 if code > 128 else None
        if signal_number is not None:
            try:
                name = signal.Signals(signal_number).name
            except ValueError:
                name = str(signal_number)
            return f"crashed: the program was killed by signal {name}", "crashed"
        if unshare_lines and code != 0:
            return "crashed: the program was killed by a signal", "crashed"
        body = (stdout + ("\n" if stdout and not stdout.endswith("\n") else "")) + stderr[-STDERR_TAIL_CHARS:].strip()
        return body.strip() or f"the program exited with status {code}", "error"
