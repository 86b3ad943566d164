# Sourced by cross/build, cross/test and cross/package: what a target needs,
# installed when missing, and the environment cargo needs to build for it.
# What works on these machines was measured: ../shared/notes/cross.md.
# shellcheck shell=bash
set -euo pipefail

target=${1:?usage: $0 TARGET (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-musl, x86_64-unknown-linux-gnu)}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

case $target in
  aarch64-unknown-linux-gnu) deb_arch=arm64; triplet=aarch64-linux-gnu; qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) deb_arch=armhf; triplet=arm-linux-gnueabihf; qemu=qemu-arm ;;
  x86_64-unknown-linux-gnu) deb_arch=amd64; triplet=x86_64-linux-gnu; qemu="" ;;
  # Fully static: no libc or libpcap needed on the box (OpenWrt, Alpine,
  # any aarch64 Linux). Debian's musl:arm64 wraps the glibc cross gcc.
  aarch64-unknown-linux-musl) deb_arch=arm64; triplet=aarch64-linux-musl; qemu=qemu-aarch64; static=1 ;;
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

static=${static:-}
if [ -n "$static" ]; then
  rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
  if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
    # Kept: the musl packages below are of this architecture.
    $sudo dpkg --add-architecture "$deb_arch"
  fi
  apt_install gcc-aarch64-linux-gnu qemu-user dpkg-dev flex bison make \
    "musl:$deb_arch" "musl-dev:$deb_arch" "musl-tools:$deb_arch"
  sysroot=$root/target/sysroot/$triplet
  if [ ! -f "$sysroot/.complete" ]; then
    # Debian ships no static musl libpcap, so it is built from Debian's own
    # source package (hash-checked by apt against the signed Release file)
    # with only the Linux capture module: no D-Bus, USB, RDMA or netlink.
    rm -rf "$sysroot" && mkdir -p "$sysroot/apt/lists/partial" "$sysroot/src" "$sysroot/kernel"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
      > "$sysroot/apt/sources.list"
    apt_src=(-o "Dir::Etc::SourceList=$sysroot/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o "Dir::State::Lists=$sysroot/apt/lists" -o Debug::NoLocking=1)
    apt-get "${apt_src[@]}" update -q >/dev/null
    (cd "$sysroot/src" && apt-get "${apt_src[@]}" source -q --download-only libpcap >&2 &&
      dpkg-source -x libpcap_*.dsc libpcap >/dev/null)
    # musl has no kernel headers of its own; the cross glibc's are the same kernel's.
    cp -r /usr/aarch64-linux-gnu/include/{linux,asm,asm-generic} "$sysroot/kernel/"
    (cd "$sysroot/src/libpcap" &&
      CC=aarch64-linux-musl-gcc CFLAGS="-O2 -I$sysroot/kernel" ./configure -q --host=aarch64-linux-musl \
        --prefix="$sysroot" --disable-shared --disable-dbus --disable-rdma --disable-bluetooth \
        --disable-usb --without-libnl --disable-remote --with-pcap=linux >&2 &&
      make -s -j"$(nproc)" libpcap.a >&2 && install -D -m 0644 libpcap.a "$sysroot/lib/libpcap.a")
    touch "$sysroot/.complete"
  fi
  export "CARGO_TARGET_${upper}_LINKER=aarch64-linux-musl-gcc"
  export "CC_${lower}=aarch64-linux-musl-gcc"
  export "AR_${lower}=aarch64-linux-gnu-ar"
  export "CARGO_TARGET_${upper}_RUNNER=$qemu"
  export LIBPCAP_LIBDIR=$sysroot/lib
  export LIBPCAP_VER=1.10.3
  qemu_run=("$qemu")
elif [ "$deb_arch" != amd64 ]; then
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
  qemu_run=("$qemu" -L "$sysroot")
fi
