-- RepoTune in Neovim 0.12+ (built-in LSP client, no plugins needed).
-- Needs `repotune` on PATH (e.g. the virtualenv you installed RepoTune into, activated).
vim.lsp.config('repotune', {
  cmd = { 'repotune', 'serve' },
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'rust', 'java', 'c', 'cpp', 'cs', 'ruby', 'markdown',
  },
  -- The workspace folder, which RepoTune indexes, is the nearest directory holding one of these.
  root_markers = { '.git', 'pyproject.toml' },
  -- Optional: any setting from repotune.toml, e.g. shorter single-line completions.
  init_options = { completion = { max_tokens_line = 32 } },
})
vim.lsp.enable('repotune')

-- Show RepoTune's suggestions as inline ghost text while typing, and accept one with <Tab>.
vim.lsp.inline_completion.enable()
vim.keymap.set('i', '<Tab>', function()
  if not vim.lsp.inline_completion.get() then
    return '<Tab>'
  end
end, { expr = true, desc = 'Accept the inline completion' })

-- Optional: when the cursor rests at a new place (see 'updatetime'), RepoTune prepares that
-- place's prompt, so the first suggestion there comes sooner. Edits need nothing more.
vim.api.nvim_create_autocmd('CursorHold', {
  callback = function(args)
    local client = vim.lsp.get_clients({ bufnr = args.buf, name = 'repotune' })[1]
    if client then
      client:notify('repotune/prefetch', vim.lsp.util.make_position_params(0, client.offset_encoding))
    end
  end,
})

-- Optional: ask about the codebase, or about the code you are in. `:RepoTuneAsk What does this
-- function do?` is about the function at the cursor; on selected lines (`:'<,'>RepoTuneAsk ...`)
-- about those lines. The answer, with the files it cites, opens in a floating window.
vim.api.nvim_create_user_command('RepoTuneAsk', function(command)
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'repotune' })[1]
  if not client then
    return vim.notify('RepoTune is not running for this buffer', vim.log.levels.WARN)
  end
  local cursor = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local range = { start = cursor.position, ['end'] = cursor.position }
  if command.range > 0 then -- whole lines: from the first's start to the start of the next
    range = { start = { line = command.line1 - 1, character = 0 }, ['end'] = { line = command.line2, character = 0 } }
  end
  local ask = { question = command.args, textDocument = cursor.textDocument, range = range }
  client:request('workspace/executeCommand', { command = 'repotune.ask', arguments = { ask } }, function(err, result)
    if err then
      return vim.notify('RepoTune: ' .. err.message, vim.log.levels.ERROR)
    end
    vim.lsp.util.open_floating_preview(vim.split(result.text, '\n'), 'markdown', { border = 'rounded' })
  end)
end, { nargs = '+', range = true, desc = 'Ask RepoTune about the codebase or the code in view' })
