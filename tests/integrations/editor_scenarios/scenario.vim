" The test's steps, run after the integration's VimEnter: wait for go-save,
" save a file (a heartbeat), report saved, wait for go-quit, quit (end).
let s:dir = $SCENARIO_DIR
function! s:WaitFor(name) abort
  let n = 0
  while !filereadable(s:dir . '/' . a:name) && n < 1500
    sleep 10m
    let n += 1
  endwhile
  return filereadable(s:dir . '/' . a:name)
endfunction
function! s:Scenario() abort
  if !s:WaitFor('go-save')
    cquit 3
  endif
  execute 'edit ' . s:dir . '/edited.txt'
  call setline(1, 'hello')
  write
  call writefile([], s:dir . '/saved')
  if !s:WaitFor('go-quit')
    cquit 4
  endif
  qall!
endfunction
autocmd VimEnter * ++nested call s:Scenario()
