"""The integrations' hooks, timed as their hosts run them, with a real daemon
applying what they write:

* the AI hosts (Claude Code, Gemini CLI, Codex CLI, GitHub Copilot CLI,
  Cursor): each hook's shell line as the host runs it (``sh -c``, the
  event's JSON on stdin, the host's session id as its own field, first),
  against ``sh -c 'exit 0'`` fed the same JSON (the floor: what any
  command hook costs the host);
* Neovim, Vim and Emacs: the shipped file's own start (temp file, fsync,
  rename) and heartbeat, fired through its autocommands (Emacs: its
  functions) and timed inside the editor with the editor's clock: that is
  the time an editor event waits;
* Kakoune: each of its shell blocks (``%sh{...}`` in the shipped file) as
  Kakoune runs one, ``sh -c`` with the command's arguments: Kakoune waits
  for that shell, and it is all the hook does.

Each figure is the median and p99 of ``samples`` runs, in ms.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench_env import Home, daemon, private_home, summary

ROOT = Path(__file__).resolve().parents[2]
INTEGRATIONS = ROOT / "agent" / "integrations"
HOOK_FLOOR = "floor: sh -c 'exit 0'"
EDITOR_TIMEOUT = 120
CLAUDE_START = "claude-code SessionStart"
CLAUDE_HEARTBEAT = "claude-code heartbeat (UserPromptSubmit, PostToolUse, Stop)"
CLAUDE_OLD_HEARTBEAT = "claude-code heartbeat, id read from the JSON (no CLAUDE_CODE_SESSION_ID)"
CLAUDE_END = "claude-code SessionEnd"
GEMINI_START = "gemini-cli SessionStart"
GEMINI_HEARTBEAT = "gemini-cli heartbeat (BeforeAgent, AfterTool, AfterAgent)"
GEMINI_END = "gemini-cli SessionEnd"
# The hosts whose hooks read the id from the event's JSON only: (host, file,
# the id's field, (the rows' names and the events timed: start, heartbeat, end)).
JSON_ID_HOSTS = (
    ("codex", "codex/hooks.json", "session_id", (
        ("codex SessionStart", "SessionStart"),
        ("codex heartbeat (UserPromptSubmit, PostToolUse, Stop)", "Stop"),
        ("codex SessionEnd", "SessionEnd"),
    )),
    ("copilot-cli", "copilot-cli/session-agent.json", "sessionId", (
        ("copilot-cli sessionStart", "sessionStart"),
        ("copilot-cli heartbeat (userPromptSubmitted, postToolUse, agentStop)", "agentStop"),
        ("copilot-cli sessionEnd", "sessionEnd"),
    )),
    ("cursor", "cursor/hooks.json", "conversation_id", (
        ("cursor sessionStart", "sessionStart"),
        ("cursor beforeSubmitPrompt (a heartbeat while a session runs)", "beforeSubmitPrompt"),
        ("cursor heartbeat (afterFileEdit, afterShellExecution, afterAgentResponse, stop)", "stop"),
        ("cursor sessionEnd", "sessionEnd"),
    )),
)  # fmt: skip
KAKOUNE_ROWS = (
    "kakoune start (KakBegin)",
    "kakoune heartbeat (FocusIn, BufWritePost)",
    "kakoune end (KakEnd)",
)
# The hooks the design's goal is about: those of the editors and of today's AI hosts.
GOAL_ROWS = (
    CLAUDE_START, CLAUDE_HEARTBEAT, CLAUDE_END, GEMINI_START, GEMINI_HEARTBEAT, GEMINI_END,
    *(row for _, _, _, rows in JSON_ID_HOSTS for row, _ in rows),
    *(f"{editor} {kind}" for editor in ("nvim", "vim", "emacs") for kind in ("start", "heartbeat")),
    *KAKOUNE_ROWS,
)  # fmt: skip
# Each editor script times `start` and `heartbeat` SAMPLES times, waiting
# for the daemon to apply the first start before the heartbeats, and
# appends "<kind> <ms>" lines to $BENCH_OUT.
NVIM = """
local n, out = tonumber(os.getenv("SAMPLES")), io.open(os.getenv("BENCH_OUT"), "w")
local file = os.getenv("DATA_DIR") .. "/scopes/nvim-" .. vim.fn.getpid() .. "/current_session"
local function time(kind, event)
  for _ = 1, n do
    local began = vim.loop.hrtime()
    vim.api.nvim_exec_autocmds(event, { group = "SessionAgent", pattern = "x" })
    out:write(kind, " ", (vim.loop.hrtime() - began) / 1e6, "\\n")
  end
end
time("start", "VimEnter")
vim.wait(10000, function()
  local f = io.open(file)
  local line = f and f:read("*l")
  if f then f:close() end
  return line ~= nil and #line == 36
end, 5)
time("heartbeat", "BufWritePost")
out:close()
vim.cmd("qall!")
"""
VIM = """
let s:n = str2nr($SAMPLES)
let s:lines = []
let s:file = $DATA_DIR . '/scopes/vim-' . getpid() . '/current_session'
function! s:Time(kind, event) abort
  for i in range(s:n)
    let began = reltime()
    execute 'doautocmd SessionAgent ' . a:event . ' x'
    call add(s:lines, a:kind . ' ' . string(reltimefloat(reltime(began)) * 1000))
  endfor
endfunction
call s:Time('start', 'VimEnter')
for i in range(2000)
  if getftype(s:file) ==# 'file' && len(get(readfile(s:file, '', 1), 0, '')) == 36
    break
  endif
  sleep 5m
endfor
call s:Time('heartbeat', 'BufWritePost')
call writefile(s:lines, $BENCH_OUT)
qall!
"""
EMACS = """
(let ((n (string-to-number (getenv "SAMPLES")))
      (file (expand-file-name (format "scopes/emacs-%d/current_session" (emacs-pid)) (getenv "DATA_DIR")))
      (lines nil))
  (dolist (step '(("start" . session-agent-start) ("heartbeat" . session-agent-touch)))
    (when (equal (car step) "heartbeat")
      (let ((tries 0))
        (while (and (< tries 2000)
                    (not (and (file-regular-p file)
                              (with-temp-buffer
                                (insert-file-contents file)
                                (= (line-end-position) 37)))))
          (setq tries (1+ tries))
          (sleep-for 0.005))))
    (dotimes (_ n)
      (let ((began (float-time)))
        (funcall (cdr step))
        (push (format "%s %f" (car step) (* 1000 (- (float-time) began))) lines))))
  (with-temp-file (getenv "BENCH_OUT") (insert (mapconcat #'identity (nreverse lines) "\\n"))))
"""


def _kakoune_blocks() -> dict[str, str]:
    """The shell blocks of the shipped Kakoune file, by the command they are in."""
    text = (INTEGRATIONS / "kakoune" / "session-agent.kak").read_text()
    found = re.findall(r"define-command -hidden (\S+)[^\n]*%sh\{\n(.*?)\n\} \}", text, flags=re.S)
    return dict(found)


def _kakoune(home: Home, samples: int, work: Path) -> dict[str, list[float]]:
    """A start, a heartbeat (always due: the option says none was sent) and an
    end, each round; the scope is the bench's own (``kak-<its pid>``)."""
    blocks = _kakoune_blocks()
    write, beat = blocks["session-agent-write"], blocks["session-agent-beat"]
    env = {**home.env, "kak_opt_session_agent_beat": "0"}
    runs: dict[str, list[float]] = {}
    for n in range(samples + 1):  # the first round warms the page cache
        for name, script, args in zip(
            KAKOUNE_ROWS, (write, beat, write), (["start"], [], ["end"]), strict=True
        ):
            began = time.perf_counter()
            subprocess.run(
                [SH, "-c", script, "kak", *args], env=env, cwd=work, check=True, capture_output=True
            )
            if n:
                runs.setdefault(name, []).append(time.perf_counter() - began)
    return runs


def _program(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def _editor_argv(editor: str, script: Path) -> list[str] | None:
    if editor == "nvim" and (nvim := _program("nvim")):
        plugin = INTEGRATIONS / "nvim" / "session-agent.lua"
        loads = ["-c", f"luafile {plugin}", "-c", f"luafile {script}"]
        return [nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n", *loads]
    if editor == "vim" and (vim := _program("vim.nox", "vim")):
        plugin = INTEGRATIONS / "vim" / "session-agent.vim"
        return [vim, "-Nu", "NONE", "-i", "NONE", "-n", "-es", "-S", str(plugin), "-S", str(script)]
    if editor == "emacs" and (emacs := _program("emacs-nox", "emacs")):
        plugin = INTEGRATIONS / "emacs" / "session-agent.el"
        return [emacs, "--batch", "-Q", "-l", str(plugin), "-l", str(script)]
    return None


def _editor(editor: str, home: Home, samples: int, work: Path) -> dict[str, list[float]] | str:
    """Samples of the editor's start and heartbeat, or why there are none."""
    script = work / f"bench-{editor}"
    script.write_text({"nvim": NVIM, "vim": VIM, "emacs": EMACS}[editor])
    argv = _editor_argv(editor, script)
    if argv is None:
        return f"{editor} is not installed"
    out = work / f"{editor}.out"
    done = subprocess.run(
        argv,
        env={**home.env, "SAMPLES": str(samples), "BENCH_OUT": str(out), "DATA_DIR": str(home.data_dir)},
        cwd=work,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EDITOR_TIMEOUT,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        return f"{editor} failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    found: dict[str, list[float]] = {}
    for line in out.read_text().split("\n"):
        if line.strip():
            kind, ms = line.split()
            found.setdefault(kind, []).append(float(ms))
    return found


def _host_hooks(shipped: str) -> dict[str, str]:
    """Each event's first command: in a matcher group, or a plain entry
    (``command``, or Copilot's ``bash``)."""
    hooks = json.loads((INTEGRATIONS / shipped).read_text())["hooks"]
    found = {}
    for event, entries in hooks.items():
        entry = entries[0]["hooks"][0] if "hooks" in entries[0] else entries[0]
        found[event] = entry.get("command") or entry["bash"]
    return found


SH = shutil.which("sh") or "/bin/sh"  # what the AI hosts run their hooks with (or bash: no slower)


def _run_hook(command: str, payload: bytes, env: dict[str, str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run([SH, "-c", command], input=payload, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - began


def _ai_hosts(home: Home, samples: int, work: Path) -> dict[str, list[float]]:
    """Each round is a session of its own of each host (a new scope, as for
    a user): its start, a heartbeat (the id from the environment, as Claude
    Code 2.1 and Gemini CLI give it; and for Claude Code, as an older one,
    read from the event's JSON), its end; and the floor."""
    claude, gemini = _host_hooks("claude-code/settings.json"), _host_hooks("gemini-cli/settings.json")
    others = {host: _host_hooks(shipped) for host, shipped, _, _ in JSON_ID_HOSTS}
    runs: dict[str, list[float]] = {}
    for n in range(samples + 1):  # the first round warms the page cache
        session = f"0b6c6f3e-1d2a-4c55-9f0e-{n:012x}"
        payload = json.dumps(
            {
                "session_id": session,
                "transcript_path": str(work / f"{session}.jsonl"),
                "cwd": str(work),
                "hook_event_name": "PostToolUse",
                "tool_name": "Bash",
                "tool_input": {"command": "make test", "description": "Run the tests"},
                "tool_response": {"stdout": "ok\n" * 200, "stderr": ""},
            }
        ).encode()
        env = {**home.env, "CLAUDE_CODE_SESSION_ID": session}
        genv = {**home.env, "GEMINI_SESSION_ID": session}
        steps = [
            (CLAUDE_START, claude["SessionStart"], env),
            (CLAUDE_HEARTBEAT, claude["PostToolUse"], env),
            (CLAUDE_OLD_HEARTBEAT, claude["PostToolUse"], home.env),
            (CLAUDE_END, claude["SessionEnd"], env),
            (GEMINI_START, gemini["SessionStart"], genv),
            (GEMINI_HEARTBEAT, gemini["BeforeAgent"], genv),
            (GEMINI_END, gemini["SessionEnd"], genv),
            (HOOK_FLOOR, "exit 0", env),
        ]
        for name, command, where in steps:
            took = _run_hook(command, payload, where, work)
            if n:
                runs.setdefault(name, []).append(took)
        for host, _, field, rows in JSON_ID_HOSTS:
            # The host's id first and compact JSON, as Codex and Copilot write it (Cursor's
            # order is not known: its hooks look for the id wherever it is).
            fields = {field: session, "workspace_roots": [str(work)], **json.loads(payload)}
            own = json.dumps(fields, separators=(",", ":")).encode()
            for name, event in rows:
                took = _run_hook(others[host][event], own, home.env, work)
                if n:
                    runs.setdefault(name, []).append(took)
    return runs


def measure(samples: int) -> dict[str, object]:
    """Every hook's median and p99 (ms), and what could not be measured."""
    figures: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    with private_home("hooks") as home, daemon(home):
        work = Path(tempfile.mkdtemp(prefix="project-", dir=home.root))
        figures.update({name: summary(values) for name, values in _ai_hosts(home, samples, work).items()})
        figures.update({name: summary(values) for name, values in _kakoune(home, samples, work).items()})
        for editor in ("nvim", "vim", "emacs"):
            found = _editor(editor, home, samples, work)
            if isinstance(found, str):
                skipped[editor] = found
                continue
            for kind, values in found.items():
                figures[f"{editor} {kind}"] = summary(values, scale=1.0)
    return {"ms": figures, "skipped": skipped}
