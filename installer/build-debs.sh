#!/usr/bin/env bash
# Builds Rivulet's Debian packages with cargo-deb: target/debian/rivulet_VERSION_ARCH.deb (the
# desktop app and rivulet-node) and rivulet-tracker_VERSION_ARCH.deb (the tracker, its systemd
# unit and /etc/rivulet/tracker.toml). Man pages and completions come from rivulet-dist.
# usage: installer/build-debs.sh [--profile P] [--no-build] [--out DIR]
#   --profile P   the cargo profile whose binaries are packaged (default: release)
#   --no-build    package the binaries already built for P (the package test does this)
#   --out DIR     where the .debs go (default: target/debian)
set -euo pipefail
me=installer/build-debs.sh
usage="usage: $me [--profile P] [--no-build] [--out DIR]"
profile=release
build=yes
debian=
while [ $# -gt 0 ]; do
  case "$1" in
    --profile)
      [ $# -ge 2 ] || { echo "$me: --profile needs a value; $usage" >&2; exit 2; }
      profile=$2
      shift 2
      ;;
    --no-build) build=no; shift ;;
    --out)
      [ $# -ge 2 ] || { echo "$me: --out needs a folder; $usage" >&2; exit 2; }
      debian=$2
      shift 2
      ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$me: unexpected argument $1; $usage" >&2; exit 2 ;;
  esac
done
# --out is relative to where the script was started; everything else to the workspace.
[ -z "$debian" ] || debian=$(realpath -m "$debian")
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "$me: cargo-deb is missing; run installer/deps.sh" >&2
  exit 1
fi

target=${CARGO_TARGET_DIR:-target}
case "$profile" in
  dev | test) out="$target/debug" ;;
  bench) out="$target/release" ;;
  *) out="$target/$profile" ;;
esac
bins=(rivulet rivulet-node rivulet-tracker rivulet-dist)
if [ "$build" = yes ]; then
  cargo build --locked --profile "$profile" \
    -p rivulet-app -p rivulet-node-core -p rivulet-tracker -p rivulet-e2e \
    "${bins[@]/#/--bin=}"
fi
for b in "${bins[@]}"; do
  if [ ! -x "$out/$b" ]; then
    echo "$me: $out/$b is missing: build it for profile $profile first, or leave out --no-build" >&2
    exit 1
  fi
done

# What the packages ship from the clap definitions: man pages (gzipped) and completions.
rm -rf "$out/dist"
"$out/rivulet-dist" man "$out/dist/man"
gzip -9n "$out/dist/man/"*.1
"$out/rivulet-dist" completions "$out/dist/completions"

# cargo-deb reads the binaries from target/release/ (the paths in [package.metadata.deb]).
# For another profile, hard links in a staging folder stand in for that folder, and xz runs
# fast (a test build, not a release).
deb_target=$target
deb_flags=(--strip)
if [ "$out" != "$target/release" ]; then
  deb_target="$target/deb-stage"
  rm -rf "$deb_target"
  mkdir -p "$deb_target/release"
  cp -al "$out/dist" "$deb_target/release/dist"
  for b in "${bins[@]}"; do cp -l "$out/$b" "$deb_target/release/$b"; done
  deb_flags+=(--fast)
fi
debian=${debian:-$(realpath -m "$target/debian")}
mkdir -p "$debian"
for package in rivulet-app rivulet-tracker; do
  CARGO_TARGET_DIR="$deb_target" cargo deb --no-build "${deb_flags[@]}" -p "$package" -o "$debian/"
done
