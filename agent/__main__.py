"""``python -m agent`` is ``session-agent``."""

from agent.fast_cli import main

if __name__ == "__main__":
    main()
