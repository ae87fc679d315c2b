# session-agent in the fish prompt. In ~/.config/fish/config.fish:
#
#   session-agent init fish | source
#
# Before each prompt, a handler of the fish_prompt event reads the
# current-session file with fish's builtins only (no process per prompt)
# and sets SESSION_AGENT_ID to the active session's id and SESSION_AGENT_PS1
# to "[sa:<its last 12 digits>] ", or both to "" when none is active; the
# prompt shows SESSION_AGENT_PS1 before your own. Anything but a regular
# file in place of the file is never opened. The session shown is that of
# the scope named by SESSION_AGENT_SCOPE (the default scope when unset), as
# the CLI's commands in this shell use it.

function __session_agent_prompt --on-event fish_prompt
    set -g SESSION_AGENT_ID ""
    set -g SESSION_AGENT_PS1 ""
    set -l dir "$SESSION_AGENT_DATA_DIR"
    if test -z "$dir"
        set dir "$XDG_DATA_HOME"
        test -n "$dir"; or set dir "$HOME/.local/share"
        set dir "$dir/session-agent"
    end
    set -l file "$dir/current_session"
    if test -n "$SESSION_AGENT_SCOPE"; and test "$SESSION_AGENT_SCOPE" != default
        string match -qr '^[A-Za-z0-9][A-Za-z0-9._-]*$' -- "$SESSION_AGENT_SCOPE"; or return 0
        set file "$dir/scopes/$SESSION_AGENT_SCOPE/current_session"
    end
    test -f "$file"; or return 0
    read -l id < "$file" 2>/dev/null; or return 0
    if string match -qr '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' -- "$id"
        set -g SESSION_AGENT_ID $id
        set -g SESSION_AGENT_PS1 "[sa:"(string split -r -m1 -- - $id)[2]"] "
    end
end

if not functions -q __session_agent_own_prompt
    functions -q fish_prompt; and functions -c fish_prompt __session_agent_own_prompt
    function fish_prompt
        printf '%s' "$SESSION_AGENT_PS1"
        functions -q __session_agent_own_prompt; and __session_agent_own_prompt
    end
end
