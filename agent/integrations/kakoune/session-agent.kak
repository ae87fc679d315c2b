# session-agent for Kakoune: a session per Kakoune server, driven through the
# current-session file.
#
#   KakBegin                       -> write `start`: owner=<kak's pid>,
#                                     tool=kakoune, cwd=<its working dir>
#   FocusIn, BufWritePost          -> a heartbeat
#   KakEnd                         -> write `end`
#
# Kakoune writes files only through a shell, so each of these runs one small
# sh command (no program of ours); a heartbeat at most every 30 seconds.
# Each Kakoune server has its own scope, `kak-<its pid>`: the file is
# DATA_DIR/scopes/kak-<pid>/current_session, where DATA_DIR is
# $SESSION_AGENT_DATA_DIR, else ${XDG_DATA_HOME:-~/.local/share}/session-agent.
# If DATA_DIR does not exist (the agent was never run) nothing is written. The
# session is bound to the server: killed (no KakEnd), it ends `owner_exited`.
# `session-agent integrate kakoune` puts this in your kakrc.

declare-option -hidden int session_agent_beat 0

define-command -hidden session-agent-write -params 1 %{ nop %sh{
    d="${SESSION_AGENT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/session-agent}"
    [ -d "$d" ] || exit 0
    s="$d/scopes/kak-$PPID"
    umask 077
    [ -d "$s" ] || mkdir -p "$s" || exit 0
    t="$s/.edit-kak-$$"
    if [ "$1" = start ]; then
        { printf 'start\nowner=%s\ntool=kakoune\n' "$PPID"
          case $PWD in /*[[:cntrl:]]*) ;; /*) printf 'cwd=%s\n' "$PWD" ;; esac; } >"$t"
    else
        printf 'end\n' >"$t"
    fi && mv -f "$t" "$s/current_session"
} }

define-command -hidden session-agent-beat %{ evaluate-commands %sh{
    now=$(date +%s)
    [ $((now - kak_opt_session_agent_beat)) -ge 30 ] || exit 0
    echo "set-option global session_agent_beat $now"
    f="${SESSION_AGENT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/session-agent}/scopes/kak-$PPID/current_session"
    [ -f "$f" ] && touch -c "$f"
} }

hook -group session-agent global KakBegin .* %{ session-agent-write start }
hook -group session-agent global KakEnd .* %{ session-agent-write end }
hook -group session-agent global FocusIn .* %{ session-agent-beat }
hook -group session-agent global BufWritePost .* %{ session-agent-beat }
