"""The Python sandbox: every hostile program ends in a clear ToolResult error, never a hang or an
exception in the caller; normal code works; run_many keeps order and runs in parallel.

Tests marked "OS layer" turn the audit hook off (``audit_hook=False``) so that what stops the
program is the operating-system boundary alone (uid drop, rlimits, namespaces), not the hook.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
import time
import uuid

import pytest

from lightning_grpo.environments import ERROR_KINDS, PythonSandbox, ToolResult
from lightning_grpo.environments import sandbox as sandbox_module

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the uid drop to nobody happens only when running as root")


def _namespaces() -> str:
    return sandbox_module._namespace_prefix()[1]


needs_network_namespace = pytest.mark.skipif(
    "network" not in _namespaces(), reason=f"no network namespace on this machine: {_namespaces()}"
)


def small(**overrides) -> PythonSandbox:
    options = dict(timeout_s=2.0, cpu_s=1.0, memory_mb=128, max_output_bytes=1000, max_parallel=2)
    options.update(overrides)
    return PythonSandbox(**options)


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (the program's source is the last argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if marker.encode() in command:
            found.append(int(entry))
    return found


def python_worker_with(marker: str) -> int | None:
    """The sandboxed interpreter (not the ``unshare`` wrapper) running the source with ``marker``."""
    for pid in processes_with(marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                first = handle.read().split(b"\0")[0]
        except OSError:
            continue
        if not first.endswith(b"unshare"):
            return pid
    return None


# --------------------------------------------------------------------------------------------
# Normal code


def test_printing_a_value_returns_stdout() -> None:
    result = small().run("import math\nprint(math.comb(10, 3) * 7)")
    assert result == ToolResult("840\n", None, result.seconds)
    assert result.seconds > 0


def test_code_may_write_and_read_files_in_its_scratch_directory_which_is_deleted_afterwards() -> None:
    result = small().run("import os\nopen('notes.txt', 'w').write('kept')\nprint(open('notes.txt').read(), os.getcwd())")
    assert result.error is None, result.text
    text, cwd = result.text.split()
    assert text == "kept"
    assert os.path.basename(cwd).startswith("lightning_grpo_sandbox_")
    assert not os.path.exists(cwd)


def test_an_exception_returns_the_output_and_the_traceback_tail() -> None:
    result = small().run("print('before')\nprint(1 / 0)")
    assert result.error == "error"
    assert result.text.startswith("before\n")
    assert result.text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_syntax_error_is_reported_as_syntax() -> None:
    result = small().run("print(")
    assert result.error == "syntax"
    assert "SyntaxError" in result.text and "never closed" in result.text


def test_a_non_zero_exit_status_is_an_error() -> None:
    result = small().run("import sys\nprint('partial')\nsys.exit(3)")
    assert result.error == "error"
    assert "partial" in result.text and "SystemExit: 3" in result.text


# --------------------------------------------------------------------------------------------
# Limits


def test_an_infinite_loop_hits_the_cpu_limit() -> None:
    # a generous wall clock (the machine may be busy): what stops the loop is the CPU limit
    result = small(timeout_s=20.0, cpu_s=1.0).run("while True:\n    pass")
    assert result.error == "cpu", result
    assert "CPU" in result.text


def test_a_cpu_limit_the_program_tries_to_ignore_still_stops_it() -> None:
    # SIGXCPU ignored: the hard limit (one second later) kills it
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass"
    result = small(timeout_s=20.0, cpu_s=1.0).run(code)
    assert result.error == "cpu", result


def test_sleeping_past_the_wall_clock_times_out_and_leaves_no_process() -> None:
    marker = f"sleeper_{uuid.uuid4().hex}"
    outcome: list[ToolResult] = []
    code = f"import time  # {marker}\nprint('started', flush=True)\nwhile True:\n    time.sleep(1)"
    runner = threading.Thread(target=lambda: outcome.append(small(timeout_s=1.0).run(code)), daemon=True)
    runner.start()
    runner.join(timeout=120)  # a hang detector: the program itself never ends
    try:
        assert not runner.is_alive(), "the call did not return: the timed-out program was not killed"
        assert outcome[0].error == "timeout", outcome[0]
        assert "1 s" in outcome[0].text
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_memory_bomb_hits_the_memory_limit() -> None:
    # 400 MB at once, then growing in steps: both fail under a 128 MB address-space limit
    for code in (
        "data = bytearray(400 * 1024 * 1024)\nprint('allocated', len(data))",
        "blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))",
    ):
        result = small(timeout_s=20.0, cpu_s=10.0).run(code)
        assert result.error == "memory", (code, result)
        assert "128 MB" in result.text
        assert "allocated" not in result.text


def test_huge_output_is_cut_at_the_limit() -> None:
    result = small(timeout_s=20.0, cpu_s=10.0).run("while True:\n    print('x' * 100)")
    assert result.error == "output_limit", result
    assert "1000 bytes" in result.text
    assert len(result.text) < 200


def test_output_exactly_at_the_limit_is_returned_whole() -> None:
    result = small().run("print('y' * 999)")  # 999 characters and a newline: 1000 bytes
    assert result.error is None
    assert result.text == "y" * 999 + "\n"


def test_a_stderr_flood_is_bounded_too() -> None:
    code = "import sys\nwhile True:\n    sys.stderr.write('z' * 1000)"
    result = small(timeout_s=20.0, cpu_s=10.0).run(code)
    assert result.error == "output_limit", result
    assert "stderr" in result.text


# --------------------------------------------------------------------------------------------
# Processes


def test_a_fork_bomb_is_forbidden_by_the_hook() -> None:
    result = small().run("import os\nwhile True:\n    os.fork()")
    assert result.error == "forbidden", result
    assert "os.fork" in result.text


def fork_bomb(marker: str) -> str:
    """Up to 200 children that sleep a minute each; prints how many forks succeeded (the marker finds them)."""
    return (
        f"import os, time  # {marker}\n"
        "children = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    children += 1\n"
        "print(children)\n"
    )


@needs_root
def test_os_layer_a_fork_bomb_is_bounded_by_the_process_limit_and_cleaned_up() -> None:
    marker = f"bomb_{uuid.uuid4().hex}"
    code = fork_bomb(marker)
    result = small(audit_hook=False, timeout_s=20.0).run(code)
    assert result.error is None, result
    children = int(result.text)
    assert 0 <= children < sandbox_module.MAX_PROCESSES  # as root (no uid drop) all 200 would start
    assert processes_with(marker) == []  # the sleeping children died with the sandbox


def test_os_system_is_forbidden() -> None:
    result = small().run("import os\nos.system('echo escaped')")
    assert result.error == "forbidden", result
    assert "os.system" in result.text and "escaped" not in result.text


def test_subprocess_is_forbidden() -> None:
    result = small().run("import subprocess\nprint(subprocess.run(['echo', 'escaped'], capture_output=True).stdout)")
    assert result.error == "forbidden", result
    assert "subprocess.Popen" in result.text and "escaped" not in result.text


def test_ctypes_and_the_unaudited_fork_exec_cannot_be_imported() -> None:
    for module in ("ctypes", "_posixsubprocess"):
        result = small().run(f"import {module}")
        assert result.error == "forbidden", (module, result)
        assert f"import {module}" in result.text


def sigkill_a_running_worker() -> tuple[ToolResult, str]:
    """Start a 60 s sandbox call, SIGKILL its interpreter from outside once it is up; (its result, its marker)."""
    marker = f"victim_{uuid.uuid4().hex}"
    results: list[ToolResult] = []
    runner = threading.Thread(
        target=lambda: results.append(small(timeout_s=60.0).run(f"import time  # {marker}\ntime.sleep(60)"))
    )
    runner.start()
    worker = None
    for _ in range(2000):  # until the interpreter is up (polling, not timing)
        worker = python_worker_with(marker)
        if worker is not None:
            break
        time.sleep(0.01)
    assert worker is not None, "the sandboxed interpreter never appeared"
    os.kill(worker, signal.SIGKILL)
    runner.join(timeout=60)
    assert not runner.is_alive(), "the sandbox call hung after its worker was killed"
    return results[0], marker


def test_a_worker_killed_from_outside_is_reported_as_crashed() -> None:
    result, marker = sigkill_a_running_worker()
    assert result.error == "crashed", result
    assert processes_with(marker) == []


# --------------------------------------------------------------------------------------------
# Files, environment, network


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("the-secret-contents")
    path.chmod(0o600)
    return path


def test_reading_files_outside_the_scratch_directory_is_forbidden(secret_file) -> None:
    for path in (str(secret_file), "/etc/passwd"):
        result = small().run(f"print(open({path!r}).read())")
        assert result.error == "forbidden", (path, result)
        assert path in result.text
        assert "the-secret-contents" not in result.text and "root:" not in result.text


def test_a_symlink_out_of_the_scratch_directory_is_forbidden(secret_file) -> None:
    result = small().run(f"import os\nos.symlink({str(secret_file)!r}, 'link')\nprint(open('link').read())")
    assert result.error == "forbidden", result
    assert "the-secret-contents" not in result.text


def test_writing_outside_the_scratch_directory_is_forbidden(tmp_path) -> None:
    target = tmp_path / "planted.txt"
    result = small().run(f"open({str(target)!r}, 'w').write('planted')")
    assert result.error == "forbidden", result
    assert not target.exists()


@needs_root
def test_os_layer_a_private_file_is_unreadable_to_the_sandbox_user(secret_file) -> None:
    result = small(audit_hook=False).run(f"print(open({str(secret_file)!r}).read())")
    assert result.error == "error", result
    assert "PermissionError" in result.text
    assert "the-secret-contents" not in result.text


@pytest.mark.parametrize("audit_hook", [True, False])
def test_no_environment_variable_is_inherited(monkeypatch, audit_hook) -> None:
    monkeypatch.setenv("LIGHTNING_GRPO_TEST_SECRET", "env-secret-value")
    result = small(audit_hook=audit_hook).run("import os\nprint(sorted(os.environ.items()))")
    assert result.error is None, result
    assert "env-secret-value" not in result.text and "LIGHTNING_GRPO_TEST_SECRET" not in result.text
    assert "'PATH'" in result.text  # the sandbox's own fixed environment is there


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _accepted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def _connect_code(port: int) -> str:
    return (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('no network:', type(exc).__name__)\n"
    )


def test_a_network_connection_is_forbidden_by_the_hook(listener) -> None:
    result = small().run(_connect_code(listener.getsockname()[1]))
    assert result.error == "forbidden", result
    assert "connected" not in result.text
    assert not _accepted(listener)


@needs_network_namespace
def test_os_layer_the_network_namespace_has_no_route_to_the_host(listener) -> None:
    result = small(audit_hook=False).run(_connect_code(listener.getsockname()[1]))
    assert result.error is None, result
    assert result.text.startswith("no network:"), result.text
    assert not _accepted(listener)


# --------------------------------------------------------------------------------------------
# run_many, disabling, construction


def test_run_many_keeps_order_and_runs_max_parallel_calls_at_once(monkeypatch) -> None:
    sandbox = small(max_parallel=2)
    pair_started = threading.Barrier(2, timeout=60)  # a pair must be in flight together to pass it
    lock = threading.Lock()
    running, most = [0], [0]
    original = PythonSandbox.run

    def counted(self, source):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            pair_started.wait()
            return original(self, source)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(PythonSandbox, "run", counted)
    # later calls sleep less, so they finish first: the order must still be the sources' order
    sources = [f"import time\ntime.sleep({0.05 * (4 - i)})\nprint({i})" for i in range(4)]
    results = sandbox.run_many(sources)
    assert [r.text for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert most[0] == 2


def test_run_many_turns_every_failure_into_its_own_result() -> None:
    results = small(max_parallel=2).run_many(["print(1)", "import os\nos.system('true')", "print(", "print(2)"])
    assert [r.error for r in results] == [None, "forbidden", "syntax", None]
    assert [r.text for r in (results[0], results[3])] == ["1\n", "2\n"]
    assert small().run_many([]) == []


def test_a_disabled_sandbox_starts_nothing(monkeypatch) -> None:
    def no_process(*args, **kwargs):
        raise AssertionError("a disabled sandbox started a process")

    monkeypatch.setattr(sandbox_module.subprocess, "Popen", no_process)
    sandbox = small(enabled=False)
    assert sandbox.run("print(1)").error == "disabled"
    assert [r.error for r in sandbox.run_many(["print(1)", "print(2)"])] == ["disabled", "disabled"]
    assert sandbox.isolation == "disabled"


def test_the_sandbox_is_picklable_and_works_after_a_round_trip() -> None:
    sandbox = pickle.loads(pickle.dumps(small(timeout_s=3.0, memory_mb=96)))
    assert (sandbox.timeout_s, sandbox.memory_mb) == (3.0, 96)
    assert sandbox.run("print('after pickling')").text == "after pickling\n"
    sandbox.close()


def test_it_is_built_from_yaml_by_jsonargparse() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--tool", type=PythonSandbox)
    config = parser.parse_string(
        "tool:\n  class_path: lightning_grpo.environments.PythonSandbox\n  init_args:\n    timeout_s: 3\n    memory_mb: 256\n"
    )
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    tool = instantiate(config).tool
    assert isinstance(tool, PythonSandbox)
    assert (tool.timeout_s, tool.memory_mb, tool.cpu_s) == (3.0, 256, 5.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"timeout_s": 0}, "timeout_s must be positive, got 0"),
        ({"cpu_s": -1}, "cpu_s must be positive, got -1"),
        ({"memory_mb": 8}, "memory_mb must be at least 32"),
        ({"max_output_bytes": 0}, "max_output_bytes must be at least 1, got 0"),
        ({"max_parallel": 0}, "max_parallel must be at least 1, got 0"),
    ],
)
def test_bad_settings_name_the_bad_value(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        PythonSandbox(**bad)


def test_bad_input_is_a_result_not_an_exception() -> None:
    sandbox = small()
    assert sandbox.run(None).error == "syntax"  # type: ignore[arg-type]
    assert sandbox.run("print(1)\x00").error == "syntax"
    too_long = "#" * (sandbox_module.MAX_SOURCE_BYTES + 1)
    result = sandbox.run(too_long)
    assert result.error == "error" and str(sandbox_module.MAX_SOURCE_BYTES) in result.text


def test_every_error_kind_is_a_known_kind() -> None:
    with pytest.raises(ValueError, match="'bogus'"):
        ToolResult("x", "bogus")
    assert set(ERROR_KINDS) >= {"timeout", "cpu", "memory", "output_limit", "crashed", "syntax", "forbidden", "disabled"}


def test_isolation_names_the_active_layers() -> None:
    description = small().isolation
    assert "audit hook" in description and "rlimits" in description
    assert ("uid 65534" in description or "nobody" in description) == IS_ROOT
    assert "no audit hook" in small(audit_hook=False).isolation


# --------------------------------------------------------------------------------------------
# Without namespaces (a machine where unshare is refused): the same guarantees from the process group


@pytest.fixture
def no_namespaces(monkeypatch):
    monkeypatch.setattr(sandbox_module, "_namespace_prefix", lambda: ((), "no namespaces (forced by a test)"))


def test_without_namespaces_isolation_says_so(no_namespaces) -> None:
    assert "no namespaces (forced by a test)" in small().isolation
    assert small().run("print('plain')").text == "plain\n"


def test_without_namespaces_limits_still_give_clear_errors(no_namespaces) -> None:
    sandbox = small(timeout_s=20.0, cpu_s=1.0)
    assert sandbox.run("while True:\n    pass").error == "cpu"
    assert sandbox.run("data = bytearray(400 * 1024 * 1024)").error == "memory"
    assert sandbox.run("import os\nos.system('true')").error == "forbidden"


@needs_root
def test_without_namespaces_a_fork_bomb_is_bounded_and_its_children_are_killed(no_namespaces) -> None:
    marker = f"bomb_{uuid.uuid4().hex}"
    code = fork_bomb(marker)
    try:
        result = small(audit_hook=False, timeout_s=20.0).run(code)
        assert result.error is None, result
        assert 0 <= int(result.text) < sandbox_module.MAX_PROCESSES
        assert processes_with(marker) == []  # the process group was killed after the program ended
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_without_namespaces_a_killed_worker_is_crashed_with_its_signal(no_namespaces) -> None:
    result, _ = sigkill_a_running_worker()
    assert result == ToolResult("crashed: the program was killed by signal SIGKILL", "crashed", result.seconds)
