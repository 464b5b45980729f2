#!/usr/bin/env bash
# Installs what Rivulet needs to build, run and test on Debian 12: the Debian packages
# (as root, or through sudo), cargo-nextest, cargo-deb and garage. Idempotent: a second run installs nothing.
set -euo pipefail

# Debian packages, one per line, with what needs them.
packages=(
  ffmpeg          # ingest: remux, probe, poster frames; tests: media in many containers
  pkg-config      # building crates that link C libraries
  libmpv-dev      # app: the embedded player (libmpv 0.35, client API 2.0)
  libxkbcommon-x11-0  # app: keyboard handling under X11 (loaded at run time)
  libgl1-mesa-dri     # app: OpenGL/software rendering for the window
  mesa-vulkan-drivers # app: wgpu renderer (lavapipe) when no GPU driver is present
  xvfb            # app tests: a headless X server for the end-to-end test
  x11-apps        # app tests: xwd takes the screenshot
  xdotool         # app tests: key presses into the real window (player shortcuts)
  imagemagick     # app tests: converts the screenshot to PNG
  dbus            # app tests: a private session bus for the keyring and tray tests (dbus-daemon, dbus-send)
  gnome-keyring   # app tests: a real Secret Service, where "remember me" keeps the password
  librsvg2-bin    # icons: rsvg-convert renders icons/rivulet.svg to PNG sizes
  chromium        # tests: the tracker's web pages in a real (headless) browser
  chromium-driver # tests: chromedriver, the WebDriver server the web tests drive Chromium through
  fonts-dejavu-core # rivulet-bench: the font of the swarm plot's labels
  dpkg-dev        # packages: dpkg-shlibdeps, which cargo-deb asks for the binaries' dependencies
  binutils        # packages: strip and objcopy, which cargo-deb runs on the binaries
  lintian         # package test: checks both .debs
  desktop-file-utils # package test: desktop-file-validate; update-desktop-database registers rivulet://
  appstream       # package test: appstreamcli validates the AppStream metainfo
  systemd         # package test: systemd-analyze verify checks the tracker's unit
  man-db          # package test: systemd-analyze verify finds the unit's man page
  xdg-utils       # package test: xdg-mime and xdg-open, as a desktop opens rivulet:// links
  iproute2        # nat-lab test: network namespaces, veths and a bridge (ip)
  nftables        # nat-lab test: the home routers' NAT and firewall (nft)
  miniupnpd-nftables # nat-lab test: the UPnP IGD / NAT-PMP router of home 1
  miniupnpc       # nat-lab: upnpc, to look at a router's mappings by hand
  postgresql      # tracker tests: initdb and postgres for the PostgreSQL runs of the API, web and trust tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  echo "installer/deps.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "installer/deps.sh: Rust is missing; install Rust 1.95 or newer (https://rustup.rs), then run this again" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installer/deps.sh: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installer/deps.sh: installing cargo-deb" >&2
  cargo install --locked cargo-deb
fi
if ! command -v garage >/dev/null 2>&1; then
  # tracker tests: the 3-node S3 store the origin's --store s3://… is tested against
  # (rivulet_localnet::TestGarage). About 10 min of build on 2 cores; one 56 MB binary.
  echo "installer/deps.sh: installing garage 2.5.0 (about 10 minutes)" >&2
  cargo install --locked garage --version 2.5.0
fi
