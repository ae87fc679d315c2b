# session-agent in the prompt, for bash and zsh. Source it from ~/.bashrc or
# ~/.zshrc:
#
#   . /path/to/session-agent.sh
#   PS1='${SESSION_AGENT_PS1}'"$PS1"        # bash
#   PROMPT='${SESSION_AGENT_PS1}'"$PROMPT"  # zsh (the snippet sets PROMPT_SUBST)
#
# Before each prompt, a hook reads the current-session file with shell
# builtins only (no process per prompt) and sets SESSION_AGENT_ID to the
# active session's id and SESSION_AGENT_PS1 to "[sa:<its last 12 digits>] ",
# or both to "" when none is active. A FIFO or anything but a regular file
# in place of the file is never opened. The session shown is that of the
# scope named by SESSION_AGENT_SCOPE (the default scope when it is unset),
# as the CLI's commands in this shell use it.

__session_agent_dir="${SESSION_AGENT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/session-agent}"

__session_agent_prompt() {
    SESSION_AGENT_ID=
    SESSION_AGENT_PS1=
    __session_agent_file="$__session_agent_dir/current_session"
    case ${SESSION_AGENT_SCOPE-} in
        ""|default) ;;
        [!A-Za-z0-9]*|*[!A-Za-z0-9._-]*) return 0 ;;  # not a scope name: nothing to show
        *) __session_agent_file="$__session_agent_dir/scopes/$SESSION_AGENT_SCOPE/current_session" ;;
    esac
    [ -f "$__session_agent_file" ] || return 0
    { IFS= read -r SESSION_AGENT_ID <"$__session_agent_file"; } 2>/dev/null
    case $SESSION_AGENT_ID in
        [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-*-*-*-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])
            SESSION_AGENT_PS1="[sa:${SESSION_AGENT_ID##*-}] " ;;
        *)  # `start` not yet applied, or anything else: no session to show
            SESSION_AGENT_ID= ;;
    esac
    return 0
}

if [ -n "${ZSH_VERSION-}" ]; then
    setopt PROMPT_SUBST
    autoload -Uz add-zsh-hook
    add-zsh-hook precmd __session_agent_prompt
elif [ -n "${BASH_VERSION-}" ]; then
    case ";${PROMPT_COMMAND-};" in
        *";__session_agent_prompt;"*) ;;
        *) PROMPT_COMMAND="__session_agent_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
    esac
fi
