-- session-agent for Neovim (0.7+): a session per editor run, driven through
-- the current-session file -- no process is spawned, nothing blocks.
--
--   VimEnter                              -> write `start`: owner=<nvim's pid>,
--                                            tool=nvim, cwd=<its working dir>
--   FocusGained, BufWritePost, CursorHold -> touch the file (a heartbeat)
--   VimLeavePre                           -> write `end`
--
-- Load it from init.lua with `dofile("/path/to/session-agent.lua")`, or try
-- it with `nvim -u NONE -c 'luafile session-agent.lua'`. Each Neovim has its
-- own scope, `nvim-<its pid>`, so several run side by side, each with its
-- session: the file is DATA_DIR/scopes/nvim-<pid>/current_session, where
-- DATA_DIR is $SESSION_AGENT_DATA_DIR, else
-- ${XDG_DATA_HOME:-~/.local/share}/session-agent, as the agent has it
-- (`session-agent list --scope nvim-<pid>` shows its sessions). If DATA_DIR
-- does not exist (the agent was never run) nothing is written. If no daemon runs, the last word written waits in the
-- file and is applied by the next `session-agent` command or daemon start.
-- The session is bound to this Neovim: if it crashes or is killed (no
-- VimLeavePre), the agent abandons the session with reason `owner_exited`.

if vim.g.loaded_session_agent then
  return
end
vim.g.loaded_session_agent = true

local uv = vim.loop

local function data_dir()
  local dir = os.getenv("SESSION_AGENT_DATA_DIR")
  if dir and dir ~= "" then
    return dir
  end
  local base = os.getenv("XDG_DATA_HOME")
  if not base or base == "" then
    base = (os.getenv("HOME") or "") .. "/.local/share"
  end
  return base .. "/session-agent"
end

local function scope_dir()
  return data_dir() .. "/scopes/nvim-" .. uv.os_getpid()
end

-- Write `lines` (a list) atomically: a private temp file, fsynced, renamed over the
-- current file, so the agent never reads half of it. The scope's directory
-- is made (private) if missing: a new scope, or one the agent removed.
local function write(lines)
  local st = uv.fs_stat(data_dir())
  if not st or st.type ~= "directory" then
    return
  end
  local dir = scope_dir()
  uv.fs_mkdir(data_dir() .. "/scopes", 448) -- 0700; fails harmlessly if it exists
  uv.fs_mkdir(dir, 448)
  local temp = dir .. "/.edit-nvim-" .. uv.os_getpid()
  local fd = uv.fs_open(temp, "w", 384) -- 0600
  if not fd then
    return
  end
  local ok = uv.fs_write(fd, table.concat(lines, "\n") .. "\n", -1) and uv.fs_fsync(fd)
  uv.fs_close(fd)
  if ok then
    ok = uv.fs_rename(temp, dir .. "/current_session")
  end
  if not ok then
    uv.fs_unlink(temp)
  end
end

-- A heartbeat: set the file's times to now, only if it is a regular file.
local function touch()
  local file = scope_dir() .. "/current_session"
  local st = uv.fs_lstat(file)
  if st and st.type == "file" then
    local sec, usec = uv.gettimeofday()
    local now = sec + usec / 1e6
    uv.fs_utime(file, now, now)
  end
end

-- What the session is: this editor (its owner, so that a crash ends it), the
-- tool, and where the work happens -- unless the path cannot be one line of
-- text (the agent would refuse the whole start).
local function start()
  local lines = { "start", "owner=" .. vim.fn.getpid(), "tool=nvim" }
  local cwd = uv.cwd()
  if cwd and not cwd:find("%c") then
    lines[#lines + 1] = "cwd=" .. cwd
  end
  write(lines)
end

local group = vim.api.nvim_create_augroup("SessionAgent", { clear = true })
vim.api.nvim_create_autocmd({ "FocusGained", "BufWritePost", "CursorHold" }, {
  group = group,
  callback = function()
    pcall(touch)
  end,
})
vim.api.nvim_create_autocmd("VimLeavePre", {
  group = group,
  callback = function()
    pcall(write, { "end" })
  end,
})
if vim.v.vim_did_enter == 1 then
  pcall(start)
else
  vim.api.nvim_create_autocmd("VimEnter", {
    group = group,
    callback = function()
      pcall(start)
    end,
  })
end
