#!/usr/bin/env bash
# Installs what the `dit serve` browser test needs, once (safe to rerun):
# Debian's Chromium and Node.js, and playwright-core from npm (which downloads
# no browser of its own) into .cache/browser-test/.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

dir=.cache/browser-test
version=1.65.1
installed=$(node -p "try { require('./$dir/node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$installed" != "$version" ]; then
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private": true}' > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "playwright-core@$version"
fi
