#!/bin/sh
# Makes the screenshots docs/app.md shows: runs the Xvfb tests that take them (the real app in
# a real window, see app/tests/xvfb_account.rs and xvfb_player.rs), then shrinks each picture
# the tests left in target/test-artifacts/app/ to half size and 96 colours (no dithering) into docs/app/.
# Needs ImageMagick's convert (installer/deps.sh installs it) and what the tests need.
set -eu
cd "$(dirname "$0")/.."
while test -e /tmp/rivulet-bench-running; do sleep 30; done
cargo nextest run --workspace -E 'binary(xvfb_account) | binary(xvfb_player)'
mkdir -p docs/app
for name in first-run settings-pane tray-notice login-session-ended continue-watching; do
    convert "target/test-artifacts/app/$name.png" -resize 50% +dither -colors 96 "docs/app/$name.png"
done
ls -l docs/app/
