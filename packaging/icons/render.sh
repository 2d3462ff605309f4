#!/usr/bin/env bash
# Renders the PNG sizes of the icon from peddlenet.svg (ImageMagick). The PNGs
# are committed; run this after changing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
for s in 16 32 48 64 128 256; do
    convert -background none -density 300 peddlenet.svg -resize "${s}x${s}" "png32:peddlenet-$s.png"
done
