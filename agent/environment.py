"""Every ``SESSION_AGENT_*`` environment variable, named in one place.

Constants only: the fast path (``agent.fast_cli``) imports this module.
Precedence wherever a variable stands in for an option: the option, then
the variable, then ``config.toml`` where it has the setting, then the
built-in default.

========================================  ===========================================
variable                                  what it sets
========================================  ===========================================
``SESSION_AGENT_DATA_DIR``                the data dir (``--data-dir``)
``SESSION_AGENT_RUNTIME_DIR``             the runtime dir, for the socket (``--runtime-dir``)
``SESSION_AGENT_SCOPE``                   whose current session a command means (``--scope``)
``SESSION_AGENT_IDLE_TIMEOUT``            ``start --idle-timeout``
``SESSION_AGENT_IDLE_GRACE``              ``start --idle-grace``
``SESSION_AGENT_WATCH_STEP_MS``           ``daemon --watch-step``
``SESSION_AGENT_WATCH_DEBOUNCE_MS``       ``daemon --watch-debounce``
``SESSION_AGENT_IDLE_RECHECK``            how often the daemon re-checks idle sessions (s)
``SESSION_AGENT_FAULTS``                  tests only: fault injection (``agent.faults``)
``SESSION_AGENT_FAULTS_FILE``             tests only: a fault plan a running daemon re-reads
``SESSION_AGENT_TEST_CLOCK``              tests only: simulated clocks (``agent.clock``)
========================================  ===========================================
"""

from __future__ import annotations

__all__ = [
    "DATA_DIR_ENV",
    "FAULTS_ENV",
    "FAULTS_FILE_ENV",
    "IDLE_GRACE_ENV",
    "IDLE_RECHECK_ENV",
    "IDLE_TIMEOUT_ENV",
    "RUNTIME_DIR_ENV",
    "SCOPE_ENV",
    "START_ENV",
    "TEST_CLOCK_ENV",
    "WATCH_DEBOUNCE_ENV",
    "WATCH_STEP_ENV",
]

DATA_DIR_ENV = "SESSION_AGENT_DATA_DIR"
RUNTIME_DIR_ENV = "SESSION_AGENT_RUNTIME_DIR"
SCOPE_ENV = "SESSION_AGENT_SCOPE"
IDLE_TIMEOUT_ENV = "SESSION_AGENT_IDLE_TIMEOUT"
IDLE_GRACE_ENV = "SESSION_AGENT_IDLE_GRACE"
START_ENV = (IDLE_TIMEOUT_ENV, IDLE_GRACE_ENV)  # what changes a `start`: the fast path leaves it to click
WATCH_STEP_ENV = "SESSION_AGENT_WATCH_STEP_MS"
WATCH_DEBOUNCE_ENV = "SESSION_AGENT_WATCH_DEBOUNCE_MS"
IDLE_RECHECK_ENV = "SESSION_AGENT_IDLE_RECHECK"
FAULTS_ENV = "SESSION_AGENT_FAULTS"
FAULTS_FILE_ENV = "SESSION_AGENT_FAULTS_FILE"
TEST_CLOCK_ENV = "SESSION_AGENT_TEST_CLOCK"
