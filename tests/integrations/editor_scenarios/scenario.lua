-- The test's steps, run after the integration's VimEnter (nested, so that its
-- autocommands fire): wait for go-save,
-- save a file (a heartbeat), report saved, wait for go-quit, quit (end).
local dir = assert(os.getenv("SCENARIO_DIR"))
local function exists(name)
  return vim.loop.fs_stat(dir .. "/" .. name) ~= nil
end
vim.api.nvim_create_autocmd("VimEnter", {
  nested = true, -- so that the write below fires BufWritePost
  callback = function()
    if not vim.wait(15000, function() return exists("go-save") end, 10) then
      vim.cmd("cquit 3")
    end
    vim.cmd("edit " .. dir .. "/edited.txt")
    vim.api.nvim_buf_set_lines(0, 0, -1, false, { "hello" })
    vim.cmd("write")
    io.open(dir .. "/saved", "w"):close()
    if not vim.wait(15000, function() return exists("go-quit") end, 10) then
      vim.cmd("cquit 4")
    end
    vim.cmd("qall!")
  end,
})
