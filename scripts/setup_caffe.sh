#!/usr/bin/env bash
# Provision a real Caffe for this repository, once.
#
#   scripts/setup_caffe.sh            use the host's Caffe if it works, else build the embedded one
#
# Environment:
#   MLN_CAFFE_DIR       where the state lives (default: <repo>/.caffe); share one between clones
#   MLN_CAFFE           auto (default) | host | embedded
#   MLN_PYTHON          host Python that has pycaffe (default: python3), for host mode
#   MLN_DEBIAN_MIRROR   Debian mirror URL for the embedded root (default: none given, so that
#                       mmdebstrap uses Debian's default mirror; set it to a local mirror, or to
#                       Debian's archive once bullseye has moved there)
#
# Host mode: `caffe` is on PATH and MLN_PYTHON imports caffe with Python layers. That Caffe is
# recorded in $MLN_CAFFE_DIR/host.env and used as it is; nothing is installed.
#
# Embedded mode: Debian 11 (bullseye) ships Caffe 1.0 (CPU build, Python layers). mmdebstrap builds
# a root with it in a temporary directory beside the final one, the root is checked (caffe runs,
# pycaffe and the toolkit's modules import, BLAS is OpenBLAS), stamped with the hash of its package
# list and only then renamed to $MLN_CAFFE_DIR/root. An interrupted build therefore never looks
# finished, and a changed package list triggers a rebuild. scripts/caffe-env runs commands inside.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAFFE_DIR=${MLN_CAFFE_DIR:-$REPO/.caffe}
CAFFE_CHOICE=${MLN_CAFFE:-auto}
HOST_PYTHON=${MLN_PYTHON:-python3}
MIRROR=${MLN_DEBIAN_MIRROR:-}      # empty: mmdebstrap's own default mirror for the suite
if [ -n "$MIRROR" ]; then MIRROR_NAME=$MIRROR; else MIRROR_NAME="Debian's default mirror"; fi
SUITE=bullseye
PYCOCOTOOLS=pycocotools==2.0.7   # newest release with a cp39 wheel that works with bullseye's numpy 1.19

# Everything the embedded root holds. Changing this list (or the pycocotools pin) rebuilds the root.
PACKAGES=(
  caffe python3-caffe            # Caffe 1.0, CPU build, with Python layers
  libopenblas0-pthread           # without it Caffe uses reference BLAS and convolutions crawl
  python3-opencv python3-lmdb python3-h5py python3-protobuf python3-tqdm python3-matplotlib
  python3-pytest python3-hypothesis
  python3-pip python3-setuptools python-is-python3   # `python` = the Python with pycaffe; pip -e .
)
# Modules every toolkit command expects to import, checked in both modes.
MODULES="caffe, numpy, cv2, lmdb, h5py, google.protobuf, tqdm, matplotlib, pycocotools, pytest, hypothesis"

say() { printf 'setup_caffe: %s\n' "$*" >&2; }
die() { printf 'setup_caffe: error: %s\n' "$*" >&2; exit 1; }

stamp_of_package_list() {
  printf '%s\n' "suite=$SUITE" "$PYCOCOTOOLS" "${PACKAGES[@]}" | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------- host Caffe
host_caffe_works() {
  command -v caffe >/dev/null 2>&1 || return 1
  command -v "$HOST_PYTHON" >/dev/null 2>&1 || return 1
  "$HOST_PYTHON" - <<'EOF' >/dev/null 2>&1
import caffe
assert "Python" in list(caffe.layer_type_list()), "Caffe built without WITH_PYTHON_LAYER"
EOF
}

record_host_caffe() {
  local python caffe_bin missing
  python=$(command -v "$HOST_PYTHON")
  python=$("$python" -c 'import sys; print(sys.executable)')
  caffe_bin=$(command -v caffe)
  mkdir -p "$CAFFE_DIR/bin"
  ln -sfn "$python" "$CAFFE_DIR/bin/python"
  ln -sfn "$python" "$CAFFE_DIR/bin/python3"
  printf 'MLN_HOST_PYTHON=%q\nMLN_HOST_CAFFE=%q\n' "$python" "$caffe_bin" > "$CAFFE_DIR/host.env.tmp"
  mv "$CAFFE_DIR/host.env.tmp" "$CAFFE_DIR/host.env"
  say "using the host's Caffe: $caffe_bin with $python ($("$caffe_bin" --version 2>&1 | head -n1))"
  missing=$("$python" - "$MODULES" <<'EOF'
import importlib, sys
names = [m.strip() for m in sys.argv[1].split(",")]
print(" ".join(m for m in names if importlib.util.find_spec(m.split(".")[0]) is None))
EOF
)
  if [ -n "$missing" ]; then
    say "warning: $python lacks modules the toolkit uses: $missing"
    say "         install them into that Python (pip install ...), or set MLN_CAFFE=embedded"
  fi
}

# ------------------------------------------------------------ embedded Caffe
embedded_root_is_current() {
  [ -f "$CAFFE_DIR/root/.mln-stamp" ] && [ "$(cat "$CAFFE_DIR/root/.mln-stamp")" = "$(stamp_of_package_list)" ]
}

# Runs a command inside a root directory (used to check a root before it is accepted).
in_root() {
  local root=$1; shift
  bwrap --bind "$root" / --proc /proc --dev /dev --tmpfs /tmp \
        --setenv PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --setenv HOME /tmp --setenv LC_ALL C.UTF-8 --unsetenv PYTHONPATH --unsetenv PYTHONHOME \
        --unsetenv VIRTUAL_ENV --unsetenv LD_LIBRARY_PATH "$@"
}

# Prints nothing and succeeds when the root works; prints the reason otherwise.
check_root() {
  local root=$1 out
  out=$(in_root "$root" caffe --version 2>&1) || { echo "caffe does not run: $out"; return 1; }
  case "$out" in *"1.0.0"*) ;; *) echo "unexpected caffe version: $out"; return 1 ;; esac
  out=$(in_root "$root" python -c "import $MODULES" 2>&1) || { echo "import failed: $out"; return 1; }
  out=$(in_root "$root" readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>&1) || true
  case "$out" in *openblas*) ;; *) echo "libblas.so.3 resolves to '$out', not OpenBLAS"; return 1 ;; esac
}

install_host_tools() {
  local need=()
  command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing ${need[*]}: install them (sudo apt-get install ${need[*]}), or use your own Caffe (MLN_CAFFE=host)"
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get to install them"
  say "installing ${need[*]} with apt-get"
  apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || die "apt-get install ${need[*]} failed"
}

# mmdebstrap's mode: root needs nothing more; an ordinary user needs user namespaces and subids.
choose_mmdebstrap_mode() {
  if [ "$(id -u)" -eq 0 ]; then echo root; return; fi
  local user; user=$(id -un)
  if ! unshare --user --map-root-user true 2>/dev/null || ! bwrap --bind / / true 2>/dev/null; then
    die "running as $user without root, and unprivileged user namespaces are not available here.
  The embedded Caffe needs one of:
    - root (sudo scripts/setup_caffe.sh, then use it as $user), or
    - unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or
    - your own Caffe with Python layers on PATH (MLN_CAFFE=host)."
  fi
  if ! grep -q "^$user:" /etc/subuid 2>/dev/null || ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
    die "user namespaces work, but $user has no subordinate ids for mmdebstrap --mode=unshare.
  Ask an administrator for: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user"
  fi
  echo unshare
}

check_mirror() {
  python3 - "$MIRROR/dists/$SUITE/Release" <<'EOF' >&2 || die "cannot reach the Debian mirror $MIRROR (tried $MIRROR/dists/$SUITE/Release).
  Check the network, or set MLN_DEBIAN_MIRROR to a mirror that holds $SUITE (Debian's archive once $SUITE has moved there)."
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=30).read(64)
except Exception as error:
    print("setup_caffe: %s: %s" % (sys.argv[1], error), file=sys.stderr)
    sys.exit(1)
EOF
}

# pycocotools is not packaged in bullseye: the host's pip fetches the cp39 wheel (it knows this
# machine's certificates and proxies), pip inside installs it without touching the network.
download_pycocotools_wheel() {
  local dest=$1 arch
  arch=$(uname -m)
  python3 -m pip --version >/dev/null 2>&1 || die "the host's python3 has no pip to download $PYCOCOTOOLS (apt-get install python3-pip)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.9 --implementation cp \
    --abi cp39 --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" -d "$dest" "$PYCOCOTOOLS" >&2 \
    || die "could not download the cp39 wheel of $PYCOCOTOOLS with the host's pip"
}

build_embedded_root() {
  local mode work wheel started
  started=$(date +%s)
  # Leftovers of interrupted builds: never used, removed here.
  rm -rf "$CAFFE_DIR"/build.*
  install_host_tools
  mode=$(choose_mmdebstrap_mode)
  # A named mirror is checked first, for a one-line error; without one mmdebstrap picks Debian's
  # default mirror itself and its own log says what failed.
  [ -z "$MIRROR" ] || check_mirror
  work=$(mktemp -d "$CAFFE_DIR/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  download_pycocotools_wheel "$work/wheels"
  wheel=$(basename "$(ls "$work"/wheels/*.whl)")
  say "building the embedded Caffe root from Debian $SUITE ($MIRROR_NAME, mode $mode); about a minute"
  # A tarball, then extraction as the calling user: in unshare mode a directory would be owned by
  # subordinate ids that the user can no longer delete.
  if ! mmdebstrap --mode="$mode" --variant=apt --include="$(IFS=,; echo "${PACKAGES[*]}")" \
      --customize-hook="copy-in $work/wheels/$wheel /tmp" \
      --customize-hook="chroot \"\$1\" python3 -m pip install --quiet --no-index --no-deps /tmp/$wheel" \
      --customize-hook="rm -f \"\$1/tmp/$wheel\"" \
      "$SUITE" "$work/root.tar" ${MIRROR:+"$MIRROR"} > "$work/mmdebstrap.log" 2>&1; then
    tail -n 25 "$work/mmdebstrap.log" >&2
    die "mmdebstrap failed ($MIRROR_NAME); the log's end is above; check the network, or set MLN_DEBIAN_MIRROR"
  fi
  mkdir "$work/root"
  tar -C "$work/root" -xf "$work/root.tar" --exclude='./dev/*'
  rm -f "$work/root.tar"
  local problem
  if ! problem=$(check_root "$work/root"); then die "the new root does not work: $problem"; fi
  stamp_of_package_list > "$work/root/.mln-stamp"
  # Swap in atomically: the old root (if any) is moved aside first, then deleted.
  [ -e "$CAFFE_DIR/root" ] && mv "$CAFFE_DIR/root" "$work/old-root"
  mv "$work/root" "$CAFFE_DIR/root"
  rm -f "$CAFFE_DIR/host.env"
  rm -rf "$work"; trap - EXIT
  say "embedded Caffe ready in $CAFFE_DIR/root ($(( $(date +%s) - started )) s)"
}

use_embedded() {
  local problem
  command -v bwrap >/dev/null 2>&1 || install_host_tools
  if embedded_root_is_current; then
    if problem=$(check_root "$CAFFE_DIR/root"); then
      rm -f "$CAFFE_DIR/host.env"
      say "embedded Caffe in $CAFFE_DIR/root is up to date"
      return 0
    fi
    say "the embedded Caffe in $CAFFE_DIR/root is broken ($problem); rebuilding it"
  elif [ -e "$CAFFE_DIR/root" ]; then
    say "the embedded Caffe in $CAFFE_DIR/root was built from another package list (or never finished); rebuilding it"
  fi
  build_embedded_root
}

main() {
  mkdir -p "$CAFFE_DIR"
  # One setup at a time per state directory (several clones may share it).
  exec 9>"$CAFFE_DIR/.lock"
  flock 9
  case "$CAFFE_CHOICE" in
    host)
      host_caffe_works || die "MLN_CAFFE=host, but no working host Caffe: need 'caffe' on PATH and $HOST_PYTHON importing caffe with Python layers"
      record_host_caffe ;;
    embedded) use_embedded ;;
    auto)
      if host_caffe_works; then record_host_caffe; else use_embedded; fi ;;
    *) die "MLN_CAFFE must be auto, host or embedded (got '$CAFFE_CHOICE')" ;;
  esac
}

main "$@"
