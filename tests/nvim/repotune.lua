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
