-- Drives a headless Neovim like a user would, for tests/test_neovim.py.
--
-- Loaded with `-S` after the user config (`-u tests/nvim/repotune.lua`, the README snippet) and the
-- file under test. It waits for RepoTune to attach, goes to the end of line $REPOTUNE_NVIM_LINE,
-- enters insert mode and keeps re-entering it until Neovim shows an inline suggestion (the model
-- loads in the background, so the first requests get empty answers), reads the ghost text from
-- Neovim's extmarks, presses <Tab> (the snippet's mapping) and records what landed in the buffer;
-- then it asks about the method on line $REPOTUNE_NVIM_ASK_LINE with the snippet's :RepoTuneAsk.
-- Everything observed goes to the JSON file $REPOTUNE_NVIM_RESULT; then Neovim quits.

local api, uv = vim.api, vim.uv

local result_path = assert(vim.env.REPOTUNE_NVIM_RESULT, 'REPOTUNE_NVIM_RESULT is not set')
local target_line = tonumber(vim.env.REPOTUNE_NVIM_LINE or '1')
local ask_line = tonumber(vim.env.REPOTUNE_NVIM_ASK_LINE or '1')
local timeout_ms = tonumber(vim.env.REPOTUNE_NVIM_TIMEOUT_MS or '180000')
local retrigger_ms = tonumber(vim.env.REPOTUNE_NVIM_RETRIGGER_MS or '1500')
local unanswered_ms = tonumber(vim.env.REPOTUNE_NVIM_UNANSWERED_MS or '30000')

local started = uv.hrtime()
local function elapsed_ms()
  return math.floor((uv.hrtime() - started) / 1e6)
end

vim.lsp.log.set_level(vim.env.REPOTUNE_NVIM_LSP_LOG_LEVEL or 'debug')

local out = {
  ok = false,
  error = vim.NIL,
  nvim_version = tostring(vim.version()),
  lsp_log = vim.lsp.log.get_filename(),
  timings = {},
  statuses = {},
  requests = { sent = 0, completed = 0, cancelled = 0, errors = {} },
  triggers = 0,
}

local function mark(name)
  out.timings[name] = elapsed_ms()
end

-- Status notifications tell the story of a slow run (model loading, indexing).
vim.lsp.handlers['repotune/status'] = function(_, params)
  table.insert(out.statuses, { t = elapsed_ms(), state = params and params.state })
end

local pending = {} ---@type table<integer, boolean>
api.nvim_create_autocmd('LspRequest', {
  callback = function(args)
    local request = args.data.request
    if request.method ~= 'textDocument/inlineCompletion' then
      return
    end
    local id = args.data.request_id
    if request.type == 'pending' and not pending[id] then
      pending[id] = elapsed_ms()
      out.requests.sent = out.requests.sent + 1
    elseif request.type == 'complete' then
      pending[id] = nil
      out.requests.completed = out.requests.completed + 1
      out.requests.last_response_ms = elapsed_ms()
    elseif request.type == 'cancel' then
      pending[id] = nil
      out.requests.cancelled = out.requests.cancelled + 1
    end
  end,
})

local namespace = api.nvim_create_namespace('nvim.lsp.inline_completion')

--- The inline suggestion Neovim is showing, read back from its extmarks.
local function shown_suggestion(bufnr)
  local marks = api.nvim_buf_get_extmarks(bufnr, namespace, 0, -1, { details = true })
  local mark_ = marks[1]
  if not mark_ then
    return nil
  end
  local details = mark_[4]
  local first = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    table.insert(first, chunk[1])
  end
  local lines = { table.concat(first) }
  for _, virt_line in ipairs(details.virt_lines or {}) do
    local parts = {}
    for _, chunk in ipairs(virt_line) do
      table.insert(parts, chunk[1])
    end
    table.insert(lines, table.concat(parts))
  end
  return {
    row = mark_[2],
    col = mark_[3],
    virt_text_pos = details.virt_text_pos,
    hl_group = details.virt_text and details.virt_text[1] and details.virt_text[1][2] or vim.NIL,
    lines = lines,
    text = table.concat(lines, '\n'),
    count = #marks,
  }
end

local function feed(keys, remap)
  api.nvim_feedkeys(vim.keycode(keys), remap and 'm' or 'n', false)
end

local function sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      error(err)
    end
  end, ms)
  coroutine.yield()
end

local function finish()
  out.total_ms = elapsed_ms()
  out.mode_at_end = api.nvim_get_mode().mode
  out.messages = vim.fn.execute('messages')
  vim.fn.writefile({ vim.json.encode(out) }, result_path)
  vim.cmd('stopinsert')
  vim.schedule(function()
    vim.cmd('qall!')
  end)
end

local function client_for(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'repotune' })[1]
end

local function request_sync(client, method, params, ms)
  local response = client:request_sync(method, params, ms)
  if not response then
    return { error = 'timeout' }
  end
  return { result = response.result, error = response.err }
end

local function run()
  local bufnr = api.nvim_get_current_buf()
  out.file = api.nvim_buf_get_name(bufnr)
  out.filetype = vim.bo[bufnr].filetype

  -- 1. The snippet's config starts the server on FileType; wait until it has initialized.
  local attached = vim.wait(60000, function()
    local client = client_for(bufnr)
    return client ~= nil and client.initialized
  end, 50)
  local client = client_for(bufnr)
  out.attached = attached
  if not client then
    error('RepoTune did not attach to ' .. out.file)
  end
  mark('attached')
  out.client = {
    name = client.name,
    root_dir = client.root_dir,
    workspace_folders = client.workspace_folders,
    offset_encoding = client.offset_encoding,
    server_capabilities = client.server_capabilities,
    supports_inline_completion = client:supports_method('textDocument/inlineCompletion'),
  }
  out.inline_completion_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  if not out.client.supports_inline_completion then
    error('the server does not announce inlineCompletionProvider: no ghost text can ever show')
  end

  -- 2. Go where a user would be typing: the end of the target line, in insert mode.
  local line_count = api.nvim_buf_line_count(bufnr)
  assert(target_line >= 1 and target_line <= line_count, 'REPOTUNE_NVIM_LINE is out of range')
  api.nvim_win_set_cursor(0, { target_line, 0 })
  out.line_before = api.nvim_buf_get_lines(bufnr, target_line - 1, target_line, true)[1]
  out.buffer_before = api.nvim_buf_get_lines(bufnr, 0, -1, true)
  out.changedtick_before = api.nvim_buf_get_changedtick(bufnr)

  -- 3. Enter insert mode (InsertEnter triggers a request) and re-enter it while answers are empty.
  feed('A')
  out.triggers = 1
  local last_trigger = elapsed_ms()
  local shown = nil
  while elapsed_ms() < timeout_ms do
    sleep(100)
    shown = shown_suggestion(bufnr)
    if shown and shown.text ~= '' then
      break
    end
    for id, since in pairs(pending) do
      if elapsed_ms() - since > unanswered_ms then
        -- The server answers within its time cap (2 s by default); this answer is lost.
        error(('inlineCompletion request %d got no answer in %d ms'):format(id, unanswered_ms))
      end
    end
    local idle = next(pending) == nil
    local since_response = elapsed_ms() - (out.requests.last_response_ms or 0)
    if idle and elapsed_ms() - last_trigger > retrigger_ms and since_response > 300 then
      feed('<Esc>A')
      out.triggers = out.triggers + 1
      last_trigger = elapsed_ms()
    end
  end
  mark('suggestion_shown')
  out.mode_when_shown = api.nvim_get_mode().mode
  out.cursor_when_shown = api.nvim_win_get_cursor(0)
  out.suggestion = shown or vim.NIL
  if not shown then
    out.status = request_sync(client, 'workspace/executeCommand', { command = 'repotune.status' }, 5000)
    error('no inline suggestion was shown within ' .. timeout_ms .. ' ms')
  end

  -- 4. Accept it with <Tab> through the snippet's mapping, as a user would.
  -- (Typeahead is only read by the main loop, so poll with sleep(), not vim.wait().)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  feed('<Tab>', true)
  local changed = false
  for _ = 1, 100 do
    sleep(20)
    if api.nvim_buf_get_changedtick(bufnr) ~= tick then
      changed = true
      break
    end
  end
  sleep(50)
  mark('accepted')
  out.buffer_changed = changed
  out.buffer_after = api.nvim_buf_get_lines(bufnr, 0, -1, true)
  out.cursor_after = api.nvim_win_get_cursor(0)
  local after = shown_suggestion(bufnr)
  out.ghost_text_after_accept = after and after.text or vim.NIL
  out.status = request_sync(client, 'workspace/executeCommand', { command = 'repotune.status' }, 5000)

  -- 5. Back in normal mode the cursor rests: the snippet's CursorHold autocommand tells the
  -- server, which starts preparing that place (its `prefetched` counter goes up).
  local function prefetched()
    local status = request_sync(client, 'workspace/executeCommand', { command = 'repotune.status' }, 5000)
    local result = status and status.result
    return result and result.engine and result.engine.prefetched or -1
  end
  feed('<Esc>', false)
  sleep(100)
  out.prefetched_before = prefetched()
  api.nvim_exec_autocmds('CursorHold', { buffer = bufnr })
  out.prefetched_after = out.prefetched_before
  for _ = 1, 50 do
    sleep(100)
    out.prefetched_after = prefetched()
    if out.prefetched_after > out.prefetched_before then
      break
    end
  end

  -- 6. Ask about the method the cursor is in with the snippet's :RepoTuneAsk; the answer opens
  -- in a floating window (read back by wrapping the function that opens it).
  local shown_answer = nil
  local open_preview = vim.lsp.util.open_floating_preview
  vim.lsp.util.open_floating_preview = function(contents, ...)
    shown_answer = table.concat(contents, '\n')
    return open_preview(contents, ...)
  end
  api.nvim_win_set_cursor(0, { ask_line, 8 })
  vim.cmd('RepoTuneAsk What does this method return?')
  for _ = 1, 900 do
    sleep(100)
    if shown_answer then
      break
    end
  end
  mark('answered')
  out.answer = shown_answer or vim.NIL
  if not shown_answer then
    error('no answer was shown for :RepoTuneAsk')
  end
  out.ok = true
end

local co = coroutine.create(function()
  local ok, err = xpcall(run, debug.traceback)
  if not ok then
    out.error = tostring(err)
  end
  finish()
end)
local ok, err = coroutine.resume(co)
if not ok then
  out.error = tostring(err)
  finish()
end
