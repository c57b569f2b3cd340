#!/usr/bin/env bash
# Render a `kdrun report DIR --html` page in headless Chromium, offline, and save a screenshot:
# the check that report.html opens in a real browser with nothing to fetch. Not part of CI (it
# needs the browser: `apt-get install chromium` on Debian/Ubuntu).
#
#   scripts/screenshot_report.sh outputs/multirun/<date_time>/report.html [screenshot.png]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 REPORT.html [OUT.png]" >&2; exit 2; }
page=$(realpath "$1")
out=$(realpath -m "${2:-${page%.html}.png}")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) \
  || { echo "error: no chromium found (apt-get install chromium)" >&2; exit 2; }
# Every host resolves to nothing: a page that needed the network would show it in the screenshot.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1280,2000 \
  --screenshot="$out" "file://$page" 2>/dev/null
[ -s "$out" ] || { echo "error: no screenshot written" >&2; exit 1; }
echo "$out"
