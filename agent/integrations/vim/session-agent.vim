" session-agent for Vim (8.1+): a session per editor run, driven through the
" current-session file -- no process is spawned, nothing blocks.
"
"   VimEnter                              -> write `start`: owner=<vim's pid>,
"                                            tool=vim, cwd=<its working dir>
"   FocusGained, BufWritePost, CursorHold -> a heartbeat
"   VimLeavePre                           -> write `end`
"
" Vim cannot set a file's times, so its heartbeat rewrites the active id
" (the protocol counts that as activity too). Source it from your vimrc, or
" try it with `vim -Nu NONE -S session-agent.vim`. Each Vim has its own
" scope, `vim-<its pid>`, so several run side by side, each with its session:
" the file is DATA_DIR/scopes/vim-<pid>/current_session, where DATA_DIR is
" $SESSION_AGENT_DATA_DIR, else ${XDG_DATA_HOME:-~/.local/share}/session-agent.
" If DATA_DIR does not exist (the agent was never run) nothing is written. If
" no daemon runs, the last word written waits in the file and is applied by
" the next `session-agent` command or daemon start. The session is bound to
" this Vim: if it crashes or is killed (no VimLeavePre), the agent abandons
" the session with reason `owner_exited`.

if exists('g:loaded_session_agent')
  finish
endif
let g:loaded_session_agent = 1

function! s:DataDir() abort
  if !empty($SESSION_AGENT_DATA_DIR)
    return $SESSION_AGENT_DATA_DIR
  endif
  let base = !empty($XDG_DATA_HOME) ? $XDG_DATA_HOME : expand('~/.local/share')
  return base . '/session-agent'
endfunction

function! s:ScopeDir() abort
  return s:DataDir() . '/scopes/vim-' . getpid()
endfunction

" Write a:lines (a list) atomically: a temp file, fsynced ('s'), renamed into place;
" the scope's directory made (private) if missing.
function! s:Write(lines) abort
  if !isdirectory(s:DataDir())
    return
  endif
  let dir = s:ScopeDir()
  if !isdirectory(dir)
    silent! call mkdir(dir, 'p', 0700)
  endif
  let temp = dir . '/.edit-vim-' . getpid()
  try
    if writefile(a:lines, temp, 's') == 0 && setfperm(temp, 'rw-------')
          \ && rename(temp, dir . '/current_session') == 0
      return
    endif
  catch
  endtry
  silent! call delete(temp)
endfunction

" A heartbeat: rewrite the active id, if the file is a small regular file
" that holds one (never read a FIFO or follow a symlink: getftype tells).
function! s:Touch() abort
  let file = s:ScopeDir() . '/current_session'
  if getftype(file) !=# 'file' || getfsize(file) > 64
    return
  endif
  try
    let line = get(readfile(file, '', 1), 0, '')
  catch
    return
  endtry
  if line =~? '^\x\{8}-\x\{4}-\x\{4}-\x\{4}-\x\{12}$'
    call s:Write([line])
  endif
endfunction

" What the session is: this editor (its owner, so that a crash ends it), the
" tool, and where the work happens -- unless the path cannot be one line of
" text (the agent would refuse the whole start).
function! s:Start() abort
  let lines = ['start', 'owner=' . getpid(), 'tool=vim']
  let cwd = getcwd()
  if cwd !~# '[[:cntrl:]]'
    call add(lines, 'cwd=' . cwd)
  endif
  call s:Write(lines)
endfunction

augroup SessionAgent
  autocmd!
  autocmd FocusGained,BufWritePost,CursorHold * call s:Touch()
  autocmd VimLeavePre * call s:Write(['end'])
augroup END

if v:vim_did_enter
  call s:Start()
else
  autocmd SessionAgent VimEnter * call s:Start()
endif
