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
# in place of the file is never opened.

__session_agent_file="${SESSION_AGENT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/session-agent}/current_session"

__session_agent_prompt() {
    SESSION_AGENT_ID=
    SESSION_AGENT_PS1=
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
