#!/usr/bin/env bash
# Renders rivulet.svg to the PNG sizes a Linux desktop uses (hicolor theme layout).
# Needs rsvg-convert (Debian: librsvg2-bin, installed by installer/deps.sh).
set -euo pipefail
cd "$(dirname "$0")"
for size in 16 22 24 32 48 64 128 256 512; do
  mkdir -p "png/${size}x${size}"
  rsvg-convert -w "$size" -h "$size" rivulet.svg -o "png/${size}x${size}/rivulet.png"
done
