# session-agent in tmux's status line. Add to ~/.tmux.conf (or
# `source-file /path/to/session-agent.tmux`). tmux has no way to read a file
# without a process, so it runs this small sh command every status-interval
# seconds (5 here); it shows "sa:<last 12 digits of the id>" or nothing.
# tmux expands the command as a format first, where "##" stands for "#":
# the shell's ${id##*-} is written ${id####*-} here.
set -g status-interval 5
set -ag status-right ' #(f="${SESSION_AGENT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/session-agent}/current_session"; [ -f "$f" ] && IFS= read -r id <"$f" && [ ${#id} -eq 36 ] && echo "sa:${id####*-}")'
