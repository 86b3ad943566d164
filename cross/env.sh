# Sourced by cross/build, cross/test and cross/package: what a target needs,
# installed when missing, and the environment cargo needs to build for it.
# What works on these machines was measured: ../shared/notes/cross.md.
# shellcheck shell=bash
set -euo pipefail

target=${1:?usage: $0 TARGET (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf, x86_64-unknown-linux-gnu)}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

case $target in
  aarch64-unknown-linux-gnu) deb_arch=arm64; triplet=aarch64-linux-gnu; qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) deb_arch=armhf; triplet=arm-linux-gnueabihf; qemu=qemu-arm ;;
  x86_64-unknown-linux-gnu) deb_arch=amd64; triplet=x86_64-linux-gnu; qemu="" ;;
  *) echo "cross: unknown target $target" >&2; exit 2 ;;
esac
upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
lower=$(echo "$target" | tr '-' '_')

apt_install() {
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "cross: installing ${need[*]}" >&2
    $sudo apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >&2
  fi
}

if [ "$deb_arch" != amd64 ]; then
  rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
  apt_install "gcc-$triplet" "libc6-dev-$deb_arch-cross" qemu-user dpkg-dev
  sysroot=$root/target/sysroot/$deb_arch
  if [ ! -f "$sysroot/.complete" ]; then
    # Multiarch packages do not install here (see README), so the target's
    # libraries are downloaded and unpacked into a sysroot instead. The
    # foreign architecture is added only for the download.
    rm -rf "$sysroot" && mkdir -p "$sysroot/debs"
    added=""
    if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
      $sudo dpkg --add-architecture "$deb_arch"; added=1
    fi
    $sudo apt-get update -q >/dev/null 2>&1 || true
    (cd "$sysroot/debs" && apt-get download -q \
      "libpcap0.8:$deb_arch" "libpcap0.8-dev:$deb_arch" "libdbus-1-3:$deb_arch" "libdbus-1-dev:$deb_arch" \
      "libsystemd0:$deb_arch" "libcap2:$deb_arch" "libgcrypt20:$deb_arch" "liblz4-1:$deb_arch" \
      "liblzma5:$deb_arch" "libzstd1:$deb_arch" "libgpg-error0:$deb_arch" "libc6:$deb_arch" "libgcc-s1:$deb_arch" >&2)
    if [ -n "$added" ]; then
      $sudo dpkg --remove-architecture "$deb_arch" || true
      $sudo apt-get update -q >/dev/null 2>&1 || true
    fi
    for d in "$sysroot"/debs/*.deb; do dpkg -x "$d" "$sysroot"; done
    touch "$sysroot/.complete"
  fi
  export "CARGO_TARGET_${upper}_LINKER=$triplet-gcc"
  export "CC_${lower}=$triplet-gcc"
  export "AR_${lower}=$triplet-ar"
  export "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-arg=-Wl,-rpath-link,$sysroot/lib/$triplet:$sysroot/usr/lib/$triplet"
  export "CARGO_TARGET_${upper}_RUNNER=$qemu -L $sysroot"
  export LIBPCAP_LIBDIR=$sysroot/usr/lib/$triplet
  export LIBPCAP_VER=1.10.3
fi
