"""User hooks (``[[hooks]]`` in config.toml), run by the real daemon."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.commands import Cli
from tests.support.daemon_process import run_daemon, wait_for


def _config(data_dir: Path, text: str, mode: int = 0o600) -> Path:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    path = data_dir / "config.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _recorder(tmp_path: Path, name: str = "hook") -> tuple[Path, str]:
    """A hook script that appends its event (stdin) and environment to a file."""
    out = tmp_path / f"{name}.jsonl"
    script = tmp_path / f"{name}.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'printf \'{{"env": "%s %s %s %s", "event": %s}}\\n\' "$SESSION_AGENT_EVENT" "$SESSION_AGENT_SEQ" '
        f'"$SESSION_AGENT_SCOPE" "$SESSION_AGENT_SESSION_ID" "$(cat)" >> {out}\n'
    )
    script.chmod(0o700)
    return out, str(script)


def _runs(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def _status_hooks(cli: Cli) -> list[dict[str, object]]:
    done = cli("status", "--json")
    hooks: list[dict[str, object]] = json.loads(done.stdout)["hooks"]["hooks"]
    return hooks


def test_a_hook_runs_each_wanted_event_in_order_with_stdin_and_environment(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    out, script = _recorder(tmp_path)
    _config(
        data_dir,
        f'[[hooks]]\nname = "rec"\non = ["started", "ended"]\nscope = "w*"\ncommand = ["{script}"]\n',
    )
    with run_daemon(tmp_path, data_dir, runtime_dir):
        ids = []
        for _ in range(3):
            ids.append(cli("start", "--scope", "work", "--project", "shop").stdout.strip())
            cli("end", "--scope", "work")
        cli("start", "--scope", "other")  # not wanted: another scope
        wait_for(lambda: len(_runs(out)) == 6)
        runs = _runs(out)
        assert [r["event"]["kind"] for r in runs] == ["started", "ended"] * 3  # type: ignore[index]
        assert [r["event"]["seq"] for r in runs] == [1, 2, 3, 4, 5, 6]  # type: ignore[index]
        assert runs[0]["env"] == f"started 1 work {ids[0]}"
        assert runs[0]["event"]["session"]["project"] == "shop"  # type: ignore[index]
        wait_for(lambda: _status_hooks(cli)[0]["cursor"] == 7)
        state = _status_hooks(cli)[0]
        assert state["runs"] == 6
        assert state["failures"] == 0
        assert state["behind"] == 0
        assert "hook rec:" in cli("status").stdout


def test_events_recorded_while_no_daemon_ran_are_run_at_its_start_unless_too_old(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    out, script = _recorder(tmp_path)
    _config(data_dir, f'[[hooks]]\nname = "rec"\ncommand = ["{script}"]\nmax_age = "1h"\n')
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("start")
        # Done with it once its cursor moved (a stop before that runs it again: at least once).
        wait_for(lambda: _status_hooks(cli)[0].get("cursor") == 1)
    cli("end")  # embedded: no daemon
    cli("start", "--scope", "later")
    with run_daemon(tmp_path, data_dir, runtime_dir):
        wait_for(lambda: _status_hooks(cli)[0].get("cursor") == 3)
        assert [r["event"]["seq"] for r in _runs(out)] == [1, 2, 3]  # type: ignore[index]
    cli("end", "--scope", "later")
    # A week passes before the daemon runs again: the event is too old to run.
    with run_daemon(tmp_path, data_dir, runtime_dir, env={"SESSION_AGENT_TEST_CLOCK": _week_later(tmp_path)}):
        wait_for(lambda: _status_hooks(cli)[0].get("cursor") == 4)
        assert len(_runs(out)) == 3
        assert _status_hooks(cli)[0]["skipped"] == 1


def _week_later(tmp_path: Path) -> str:
    """A simulated clock for the daemon (``SESSION_AGENT_TEST_CLOCK``): a week ahead."""
    clock = tmp_path / "clock.json"
    clock.write_text(json.dumps({"wall": 7 * 86400, "boot": 7 * 86400}))
    return str(clock)


def test_a_new_hook_starts_at_the_end_of_the_log(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    cli("start")
    cli("end")
    out, script = _recorder(tmp_path)
    _config(data_dir, f'[[hooks]]\ncommand = ["{script}"]\n')
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("start")
        wait_for(lambda: len(_runs(out)) == 1)
        assert _runs(out)[0]["event"]["seq"] == 3  # type: ignore[index]


def test_hooks_that_hang_fail_flood_or_vanish_delay_nothing_else(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    out, script = _recorder(tmp_path, "good")
    _config(
        data_dir,
        f'[[hooks]]\nname = "good"\ncommand = ["{script}"]\n'
        '[[hooks]]\nname = "hang"\nshell = "sleep 600"\ntimeout = "1s"\n'
        '[[hooks]]\nname = "fail"\nshell = "echo first line >&2; echo it broke >&2; exit 3"\n'
        f'[[hooks]]\nname = "flood"\ncommand = ["{_flood(tmp_path)}"]\n'
        '[[hooks]]\nname = "gone"\ncommand = ["/nonexistent/hook"]\n'
        f'[[hooks]]\nname = "noexec"\ncommand = ["{_not_executable(tmp_path)}"]\n',
    )
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        began = time.monotonic()
        for _ in range(3):
            assert cli("start").returncode == 0
            assert cli("end").returncode == 0
        commands = time.monotonic() - began
        wait_for(lambda: len(_runs(out)) == 6)  # the good hook is not held up by the hanging one
        assert commands < 0.9 * 6 * 1.0 + 5  # six commands, not six hook timeouts: a wide margin

        def states() -> dict[str, dict[str, object]]:
            return {str(h["name"]): h for h in _status_hooks(cli)}

        wait_for(lambda: all(h["cursor"] == 6 for h in states().values()), timeout=60)
        found = states()
        assert found["hang"]["failures"] == 6
        assert "did not finish within 1 s" in found["hang"]["last_failure"]["message"]  # type: ignore[index]
        assert "exited with status 3" in found["fail"]["last_failure"]["message"]  # type: ignore[index]
        assert "it broke" in found["fail"]["last_failure"]["message"]  # type: ignore[index]
        assert found["flood"]["failures"] == 0
        assert found["flood"]["runs"] == 6
        assert "cannot run /nonexistent/hook" in found["gone"]["last_failure"]["message"]  # type: ignore[index]
        assert "Permission denied" in found["noexec"]["last_failure"]["message"]  # type: ignore[index]
        assert found["good"]["failures"] == 0
        log = daemon.log()
        assert "hook fail failed for event" in log
        assert "it broke" in log
    assert not _sleepers()


def _flood(tmp_path: Path) -> Path:
    """A hook that prints megabytes on stdout and on stderr."""
    script = tmp_path / "flood.sh"
    script.write_text("#!/bin/sh\nhead -c 8000000 /dev/zero\nhead -c 3000000 /dev/zero | tr '\\0' x >&2\n")
    script.chmod(0o700)
    return script


def _not_executable(tmp_path: Path) -> Path:
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o600)
    return script


def _sleepers() -> bool:
    """Whether a hook's `sleep 600` outlived its timeout."""
    for cmdline in Path("/proc").glob("*/cmdline"):
        try:
            if cmdline.read_bytes() == b"sleep\x00600\x00":
                return True
        except OSError:
            continue
    return False


def test_a_daemon_killed_mid_hook_runs_that_event_again_after_restart(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    gate = tmp_path / "gate"
    out = tmp_path / "runs"
    _config(
        data_dir,
        f'[[hooks]]\nname = "slow"\nshell = "echo $SESSION_AGENT_SEQ >> {out}; '
        f'while [ ! -e {gate} ]; do sleep 0.05; done"\ntimeout = "1m"\n',
    )
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        cli("start")
        wait_for(lambda: out.exists() and out.read_text() == "1\n")
        daemon.kill()
    gate.touch()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("end")
        wait_for(lambda: out.read_text().split() == ["1", "1", "2"])


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_hooks_in_a_config_others_can_write_are_refused(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, mode: int
) -> None:
    marker = tmp_path / "ran"
    path = _config(data_dir, f'[[hooks]]\nshell = "touch {marker}"\n', mode)
    done = cli("start")
    assert done.returncode != 0
    assert "can be written by other users" in done.stderr
    assert f"chmod go-w {path}" in done.stderr
    assert "Traceback" not in done.stderr
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        status = json.loads(cli("status", "--json").stdout)["hooks"]
        assert "can be written by other users" in status["problem"]
        assert "hooks not (re)loaded" in daemon.log()
        os.chmod(path, 0o600)
        assert cli("start").returncode == 0
        wait_for(marker.exists)


def test_bad_hook_configs_name_what_is_wrong(data_dir: Path, cli: Cli) -> None:
    for text, words in (
        ('[[hooks]]\non = ["started"]\n', "give either command"),
        ('[[hooks]]\ncommand = "ls"\n', "command must be a list"),
        ('[[hooks]]\ncommand = ["ls"]\non = ["boom"]\n', "unknown event kind boom"),
        ('[[hooks]]\ncommand = ["ls"]\ntimeout = "2h"\n', "timeout must be"),
        ('[[hooks]]\ncommand = ["ls"]\nwhen = 1\n', "unknown key when"),
        (
            '[[hooks]]\nname = "a"\ncommand = ["ls"]\n[[hooks]]\nname = "a"\ncommand = ["ls"]\n',
            "names must differ",
        ),
        ("[events]\nkeep = 0\n", "events.keep"),
    ):
        _config(data_dir, text)
        done = cli("start")
        assert done.returncode != 0
        assert words in done.stderr, (text, done.stderr)


def test_a_hook_added_while_the_daemon_runs_is_picked_up(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    out, script = _recorder(tmp_path)
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("start")
        _config(data_dir, f'[[hooks]]\ncommand = ["{script}"]\n')
        cli("end")
        wait_for(lambda: len(_runs(out)) == 1)
        assert _runs(out)[0]["event"]["kind"] == "ended"  # type: ignore[index]
