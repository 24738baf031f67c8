#!/usr/bin/env bash
# Provision a real Caffe for this repository, once.
#
#   scripts/setup_caffe.sh            use the host's Caffe if it works, else build the embedded one
#   scripts/setup_caffe.sh --print-cuda-arch
#                                     print the GPU architectures a CUDA build would target, and why
#
# Environment:
#   MLN_CAFFE_DIR       where the state lives (default: <repo>/.caffe); share one between clones
#   MLN_CAFFE           auto (default) | host | embedded | embedded-cuda
#                       auto: the host's Caffe if it works, else embedded-cuda when the host has an
#                       NVIDIA driver (/dev/nvidiactl and libcuda.so.1), else embedded
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
#
# Embedded CUDA mode (MLN_CAFFE=embedded-cuda): a bullseye root with main, contrib and non-free,
# holding Debian's CUDA toolkit 11.2 and Caffe's build dependencies; Debian's patched Caffe source
# (apt-get source) is compiled in it with CUDA and NCCL (from NVIDIA's nvidia-nccl-cu11 wheel on
# PyPI) and installed in /usr, like the CPU package. cuDNN stays off (see CUDA_CMAKE_FLAGS). The
# build happens in $MLN_CAFFE_DIR/cuda-build.partial, is checked, stamped and renamed to
# $MLN_CAFFE_DIR/root-cuda; an interrupted build is resumed by the next run (the compiled tree is
# kept in the root, /opt/caffe-cuda/build). GPU architectures: MLN_CUDA_ARCH (e.g. "61" or "75 86")
# if set, else the compute capabilities nvidia-smi reports, else a portable list (sm_60 to sm_86,
# with compute_86 PTX that newer GPUs JIT-compile). MLN_CUDA_JOBS: parallel compile jobs (default:
# the number of CPUs). scripts/caffe-env binds the host's driver in; ./scripts/gpu_check.sh tests it.
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
  rm -f "$CAFFE_DIR/host.env" "$CAFFE_DIR/cuda.env"
  rm -rf "$work"; trap - EXIT
  say "embedded Caffe ready in $CAFFE_DIR/root ($(( $(date +%s) - started )) s)"
}

use_embedded() {
  local problem
  command -v bwrap >/dev/null 2>&1 || install_host_tools
  if embedded_root_is_current; then
    if problem=$(check_root "$CAFFE_DIR/root"); then
      rm -f "$CAFFE_DIR/host.env" "$CAFFE_DIR/cuda.env"
      say "embedded Caffe in $CAFFE_DIR/root is up to date"
      return 0
    fi
    say "the embedded Caffe in $CAFFE_DIR/root is broken ($problem); rebuilding it"
  elif [ -e "$CAFFE_DIR/root" ]; then
    say "the embedded Caffe in $CAFFE_DIR/root was built from another package list (or never finished); rebuilding it"
  fi
  build_embedded_root
}

# ---------------------------------------------------------- embedded CUDA Caffe
CUDA_ROOT=$CAFFE_DIR/root-cuda
CUDA_WORK=$CAFFE_DIR/cuda-build.partial          # kept when interrupted: the next run resumes it
CUDA_COMPONENTS=main,contrib,non-free            # nvidia-cuda-toolkit is in non-free
CAFFE_SOURCE=caffe=1.0.0+git20180821.99bd997-8   # Debian's patched Caffe, from `apt-get source`
NCCL_WHEEL=nvidia-nccl-cu11==2.21.5              # Debian has no NCCL: NVIDIA's wheel for CUDA 11
NVCC_ARCHS="35 37 50 52 53 60 61 62 70 72 75 80 86"   # what nvcc 11.2 compiles for
PORTABLE_CUDA_BIN="60 61 70 75 80 86"
PORTABLE_CUDA_PTX=86
DRIVER_DIR=/usr/lib/mln-host-driver              # scripts/caffe-env binds the host's driver here
DRIVER_PLACEHOLDER=mln-host-nvidia-driver         # stands in for Debian's driver packages, see below

# The CUDA root holds the CPU root's packages, less Debian's CPU Caffe, plus what compiling Caffe
# with CUDA needs (Debian's Build-Depends of caffe, and python3-caffe's dependencies).
CUDA_PACKAGES=(
  nvidia-cuda-toolkit            # CUDA 11.2: nvcc (with gcc 10), cudart, cuBLAS, cuRAND
  build-essential cmake
  libboost-dev libboost-filesystem-dev libboost-system-dev libboost-thread-dev libboost-python-dev
  libgflags-dev libgoogle-glog-dev libhdf5-dev libleveldb-dev liblmdb-dev libopenblas-dev
  libopencv-dev libprotobuf-dev libprotoc-dev libsnappy-dev protobuf-compiler python3-dev
  python3-numpy python3-scipy python3-skimage python3-six python3-yaml python3-pandas python3-pil
  python3-networkx python3-dateutil python3-gflags python3-nose python3-ipython cython3
)
for package in "${PACKAGES[@]}"; do
  case "$package" in caffe|python3-caffe) ;; *) CUDA_PACKAGES+=("$package") ;; esac
done
# Debian's own CMake settings for Caffe (debian/rules), with CUDA and NCCL on. cuDNN stays off:
# this Caffe (2018) calls cuDNN 7 functions that cuDNN 8 removed (cudnnGetConvolutionForward-
# Algorithm, ...), and cuDNN 8 or 9 is all there is (Debian has none; PyPI's wheels are 8 and 9).
CUDA_CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_SKIP_RPATH=TRUE
  -DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DUSE_NCCL=ON -DBLAS=Generic -Dpython_version=3
  -DBUILD_python=ON -DBUILD_python_layer=ON -DBUILD_docs=OFF -DBUILD_matlab=OFF
  -DUSE_LEVELDB=ON -DUSE_LMDB=ON -DUSE_OPENCV=ON -DALLOW_LMDB_NOLOCK=OFF -DCUDA_ARCH_NAME=Manual
)

# What the root's packages and sources are: a partial build with the same base is resumed.
cuda_base_stamp() {
  printf '%s\n' "suite=$SUITE" "components=$CUDA_COMPONENTS" "$CAFFE_SOURCE" "$NCCL_WHEEL" \
    "$PYCOCOTOOLS" "$(driver_placeholder_control)" "${CUDA_PACKAGES[@]}" | sha256sum | cut -d' ' -f1
}

# The toolkit's packages depend on the NVIDIA driver's libraries (libcuda1, libnvidia-ml1). The
# root must not hold a driver: the one that works is the host's, matching its kernel module, and
# scripts/caffe-env binds it in. This empty package, installed before the toolkit, satisfies those
# dependencies instead.
driver_placeholder_control() {
  cat <<EOF
Package: $DRIVER_PLACEHOLDER
Version: 1.0
Architecture: all
Maintainer: MLN pose toolkit <root@localhost>
Priority: optional
Section: libs
Provides: libcuda-11.2-1, libcuda.so.1 (= 999), libnvidia-ml.so.1 (= 999)
Description: stands in for the host's NVIDIA driver (bound in by scripts/caffe-env)
 Empty: the driver's libraries come from the host at run time.
EOF
}

make_driver_placeholder() {
  local dir=$1/$DRIVER_PLACEHOLDER
  mkdir -p "$dir/DEBIAN"
  driver_placeholder_control > "$dir/DEBIAN/control"
  dpkg-deb --build --root-owner-group "$dir" "$1/$DRIVER_PLACEHOLDER.deb" >/dev/null \
    || die "dpkg-deb could not build the driver placeholder package"
  chmod 644 "$1/$DRIVER_PLACEHOLDER.deb"
  rm -rf "$dir"
}
# What the finished root is, less the GPU architectures (kept in .mln-cuda-arch beside it).
cuda_stamp() {
  printf '%s\n' "$(cuda_base_stamp)" "${CUDA_CMAKE_FLAGS[@]}" | sha256sum | cut -d' ' -f1
}

host_ldconfig() {
  local tool
  for tool in "$(command -v ldconfig 2>/dev/null)" /sbin/ldconfig /usr/sbin/ldconfig; do
    [ -n "$tool" ] && [ -x "$tool" ] && { "$tool" "$@"; return; }
  done
  return 1
}

host_has_nvidia_driver() {
  { [ -e /dev/nvidiactl ] || [ -e /proc/driver/nvidia/version ]; } || return 1
  host_ldconfig -p 2>/dev/null | grep -q '^[[:space:]]*libcuda\.so\.1 '
}

# Sets CUDA_BIN (real architectures), CUDA_PTX (PTX for the JIT) and CUDA_ARCH_WHY.
choose_cuda_arch() {
  local wanted=() cap arch newest=0 caps
  CUDA_BIN=; CUDA_PTX=; CUDA_ARCH_WHY=
  if [ -n "${MLN_CUDA_ARCH:-}" ]; then
    for arch in ${MLN_CUDA_ARCH//,/ }; do       # "61", "7.5 8.6", "sm_75,sm_86"
      arch=${arch#sm_}; arch=${arch//./}
      case " $NVCC_ARCHS " in *" $arch "*) wanted+=("$arch") ;;
        *) die "MLN_CUDA_ARCH: $arch is not an architecture CUDA 11.2 compiles for ($NVCC_ARCHS)" ;;
      esac
    done
    [ ${#wanted[@]} -gt 0 ] || die "MLN_CUDA_ARCH is empty"
    CUDA_ARCH_WHY="MLN_CUDA_ARCH"
  else
    caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null) || caps=
    for cap in $caps; do
      [[ "$cap" =~ ^([0-9]+)\.([0-9])$ ]] || continue
      arch=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
      if case " $NVCC_ARCHS " in *" $arch "*) true ;; *) false ;; esac; then wanted+=("$arch")
      elif [ "$arch" -gt 86 ]; then
        # Newer than CUDA 11.2: compute_86 PTX, which the driver JIT-compiles for it.
        wanted+=(86); CUDA_ARCH_WHY="GPU compute capability $cap is newer than CUDA 11.2 knows: its driver JIT-compiles the compute_86 PTX"
      else
        say "warning: GPU compute capability $cap is older than CUDA 11.2 supports; building the portable list"
      fi
    done
    if [ ${#wanted[@]} -eq 0 ]; then
      CUDA_BIN=$PORTABLE_CUDA_BIN; CUDA_PTX=$PORTABLE_CUDA_PTX
      CUDA_ARCH_WHY="nvidia-smi reports no GPU: the portable list"
      return 0
    fi
    : "${CUDA_ARCH_WHY:=the compute capability nvidia-smi reports}"
  fi
  CUDA_BIN=$(printf '%s\n' "${wanted[@]}" | sort -n -u | tr '\n' ' ' | sed 's/ $//')
  for arch in $CUDA_BIN; do newest=$arch; done
  CUDA_PTX=$newest
}

cuda_arch_label() { printf 'bin %s, ptx %s' "$1" "$2"; }

# The root is current when its stamp matches and its build covers the wanted architectures
# (exactly, when MLN_CUDA_ARCH names them).
cuda_root_is_current() {
  local built_bin arch
  [ -f "$CUDA_ROOT/.mln-stamp" ] && [ "$(cat "$CUDA_ROOT/.mln-stamp")" = "$(cuda_stamp)" ] || return 1
  [ -f "$CUDA_ROOT/.mln-cuda-arch" ] || return 1
  built_bin=$(sed -n 's/^bin=//p' "$CUDA_ROOT/.mln-cuda-arch")
  if [ -n "${MLN_CUDA_ARCH:-}" ]; then
    [ "$(cat "$CUDA_ROOT/.mln-cuda-arch")" = "$(printf 'bin=%s\nptx=%s' "$CUDA_BIN" "$CUDA_PTX")" ]
    return
  fi
  for arch in $CUDA_BIN; do
    case " $built_bin " in *" $arch "*) ;; *) return 1 ;; esac
  done
}

check_cuda_root() {
  local root=$1 out
  check_root "$root" || return 1
  out=$(in_root "$root" sh -c 'ldd "$(command -v caffe)"' 2>&1) || { echo "ldd caffe failed: $out"; return 1; }
  case "$out" in *libcudart.so*) ;; *) echo "caffe does not link CUDA's runtime (libcudart)"; return 1 ;; esac
  case "$out" in *libnccl.so*) ;; *) echo "caffe does not link NCCL"; return 1 ;; esac
  out=$(in_root "$root" python -c 'import caffe; assert caffe.has_nccl(), "pycaffe without NCCL"' 2>&1) \
    || { echo "pycaffe check failed: $(printf '%s' "$out" | tail -n 1)"; return 1; }
}

download_nccl() {
  local dest=$1
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.9 --implementation cp \
    --abi cp39 --platform "manylinux_2_17_$(uname -m)" --platform "manylinux2014_$(uname -m)" -d "$dest" "$NCCL_WHEEL" >&2 \
    || die "could not download the $NCCL_WHEEL wheel with the host's pip"
}

# Debian's root with the toolkit, the build dependencies, Caffe's source in /opt/caffe-cuda/src and
# NCCL in /usr/local: $CUDA_WORK/root, stamped with the base stamp.
fetch_cuda_root() {
  local mode=$1 wheel nccl target started
  started=$(date +%s)
  mkdir -p "$CUDA_WORK/wheels"
  download_pycocotools_wheel "$CUDA_WORK/wheels"
  wheel=$(basename "$(ls "$CUDA_WORK"/wheels/pycocotools-*.whl)")
  make_driver_placeholder "$CUDA_WORK/wheels"
  say "building the CUDA root from Debian $SUITE ($CUDA_COMPONENTS; $MIRROR_NAME, mode $mode): about 2 GB of packages, 3 to 10 minutes"
  # root mode writes the directory itself; unshare mode a tarball (see build_embedded_root).
  if [ "$mode" = root ]; then target=$CUDA_WORK/root; else target=$CUDA_WORK/root.tar; fi
  if ! mmdebstrap --mode="$mode" --variant=apt --components="$CUDA_COMPONENTS" \
      --include="$(IFS=,; echo "${CUDA_PACKAGES[*]}")" \
      --setup-hook='sed -n "s/^deb /deb-src /p" "$1/etc/apt/sources.list" > "$1/etc/apt/sources.list.d/mln-caffe-source.list"' \
      --essential-hook="copy-in $CUDA_WORK/wheels/$DRIVER_PLACEHOLDER.deb /tmp" \
      --essential-hook="chroot \"\$1\" dpkg -i /tmp/$DRIVER_PLACEHOLDER.deb && rm -f \"\$1/tmp/$DRIVER_PLACEHOLDER.deb\"" \
      --customize-hook="copy-in $CUDA_WORK/wheels/$wheel /tmp" \
      --customize-hook="chroot \"\$1\" python3 -m pip install --quiet --no-index --no-deps /tmp/$wheel" \
      --customize-hook="rm -f \"\$1/tmp/$wheel\"" \
      --customize-hook="chroot \"\$1\" sh -c 'mkdir -p /opt/caffe-cuda && cd /opt/caffe-cuda && apt-get source -q $CAFFE_SOURCE && rm -f *.tar.* && mv caffe-*/ src'" \
      --customize-hook="mkdir -p \"\$1$DRIVER_DIR\"" \
      "$SUITE" "$target" ${MIRROR:+"$MIRROR"} > "$CUDA_WORK/mmdebstrap.log" 2>&1; then
    tail -n 25 "$CUDA_WORK/mmdebstrap.log" >&2
    die "mmdebstrap failed ($MIRROR_NAME); the log's end is above; check the network, or set MLN_DEBIAN_MIRROR"
  fi
  if [ "$mode" != root ]; then
    mkdir "$CUDA_WORK/root"
    tar -C "$CUDA_WORK/root" -xf "$CUDA_WORK/root.tar" --exclude='./dev/*'
    rm -f "$CUDA_WORK/root.tar"
  else
    find "$CUDA_WORK/root/dev" -mindepth 1 -delete
  fi
  say "Debian root ready ($(( $(date +%s) - started )) s); adding NCCL ($NCCL_WHEEL)"
  download_nccl "$CUDA_WORK/wheels"
  nccl=$(ls "$CUDA_WORK"/wheels/nvidia_nccl_cu11-*.whl)
  python3 -m zipfile -e "$nccl" "$CUDA_WORK/nccl" || die "could not unpack $nccl"
  cp "$CUDA_WORK/nccl/nvidia/nccl/include/nccl.h" "$CUDA_WORK/root/usr/local/include/"
  cp "$CUDA_WORK/nccl/nvidia/nccl/lib/libnccl.so.2" "$CUDA_WORK/root/usr/local/lib/"
  ln -sfn libnccl.so.2 "$CUDA_WORK/root/usr/local/lib/libnccl.so"
  rm -rf "$CUDA_WORK/nccl" "$CUDA_WORK/wheels"
  cuda_base_stamp > "$CUDA_WORK/root/.mln-base-stamp"
}

# Configures and compiles Caffe in the root's /opt/caffe-cuda/build (incremental when the tree is
# there), installs it into /usr; make's progress is shown, its whole output logged.
compile_cuda_caffe() {
  local root=$1 jobs log started status
  started=$(date +%s)
  jobs=${MLN_CUDA_JOBS:-$(nproc)}
  log=$root/opt/caffe-cuda/build.log
  say "compiling Caffe with CUDA for $(cuda_arch_label "$CUDA_BIN" "$CUDA_PTX") with $jobs jobs (log: ${log#"$root"} in the root)"
  if ! in_root "$root" sh -c 'mkdir -p /opt/caffe-cuda/build && cd /opt/caffe-cuda/build && exec cmake "$@" ../src' \
      cmake "${CUDA_CMAKE_FLAGS[@]}" -DCUDA_ARCH_BIN="$CUDA_BIN" -DCUDA_ARCH_PTX="$CUDA_PTX" >> "$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "cmake failed for Caffe; the log's end is above (whole log: $log)"
  fi
  set +o pipefail
  in_root "$root" make -C /opt/caffe-cuda/build -j"$jobs" all 2>&1 | tee -a "$log" \
    | awk '/^\[ *[0-9]+%\]/ { p = substr($0, 1, index($0, "]")); if (p != last) { print "setup_caffe: compiling " $0; fflush(); last = p } }' >&2
  status=${PIPESTATUS[0]}
  set -o pipefail
  if [ "$status" -ne 0 ]; then
    grep -E 'error|Error' "$log" | tail -n 15 >&2 || true
    die "compiling Caffe failed; errors above (whole log: $log). The partial build is kept: the next run resumes it"
  fi
  in_root "$root" make -C /opt/caffe-cuda/build install >> "$log" 2>&1 || { tail -n 15 "$log" >&2; die "make install failed (log: $log)"; }
  in_root "$root" ldconfig >> "$log" 2>&1 || die "ldconfig in the root failed"
  say "compiled and installed ($(( $(date +%s) - started )) s)"
}

# $1 = fresh: from mmdebstrap on, whatever is there (the current root is broken).
build_cuda_root() {
  local mode started problem fresh=${1:-}
  started=$(date +%s)
  install_host_tools
  mode=$(choose_mmdebstrap_mode)
  if [ "$fresh" = fresh ]; then
    rm -rf "$CUDA_WORK"
  fi
  if [ -f "$CUDA_WORK/root/.mln-base-stamp" ] && [ "$(cat "$CUDA_WORK/root/.mln-base-stamp")" = "$(cuda_base_stamp)" ]; then
    say "resuming the interrupted CUDA build in $CUDA_WORK"
  elif [ "$fresh" != fresh ] && [ -f "$CUDA_ROOT/.mln-base-stamp" ] && [ "$(cat "$CUDA_ROOT/.mln-base-stamp")" = "$(cuda_base_stamp)" ]; then
    say "same packages, other build settings: recompiling a copy of $CUDA_ROOT (the current one stays in use meanwhile)"
    rm -rf "$CUDA_WORK"; mkdir -p "$CUDA_WORK"
    cp -a "$CUDA_ROOT" "$CUDA_WORK/root"
    rm -f "$CUDA_WORK/root/.mln-stamp" "$CUDA_WORK/root/.mln-cuda-arch"
  else
    [ -z "$MIRROR" ] || check_mirror
    rm -rf "$CUDA_WORK"; mkdir -p "$CUDA_WORK"
    fetch_cuda_root "$mode"
  fi
  compile_cuda_caffe "$CUDA_WORK/root"
  if ! problem=$(check_cuda_root "$CUDA_WORK/root"); then
    die "the new CUDA root does not work: $problem (the build is kept in $CUDA_WORK; delete it to start over)"
  fi
  printf 'bin=%s\nptx=%s' "$CUDA_BIN" "$CUDA_PTX" > "$CUDA_WORK/root/.mln-cuda-arch"
  cuda_stamp > "$CUDA_WORK/root/.mln-stamp"
  # Swap in atomically: the old root (if any) is moved aside first, then deleted.
  [ -e "$CUDA_ROOT" ] && mv "$CUDA_ROOT" "$CUDA_WORK/old-root"
  mv "$CUDA_WORK/root" "$CUDA_ROOT"
  rm -rf "$CUDA_WORK"
  say "CUDA Caffe ready in $CUDA_ROOT ($(( $(date +%s) - started )) s in all)"
}

use_embedded_cuda() {
  local problem
  command -v bwrap >/dev/null 2>&1 || install_host_tools
  choose_cuda_arch
  say "GPU architectures: $(cuda_arch_label "$CUDA_BIN" "$CUDA_PTX") ($CUDA_ARCH_WHY)"
  if cuda_root_is_current; then
    if problem=$(check_cuda_root "$CUDA_ROOT"); then
      say "CUDA Caffe in $CUDA_ROOT is up to date"
    else
      say "the CUDA Caffe in $CUDA_ROOT is broken ($problem); rebuilding it"
      build_cuda_root fresh
    fi
  else
    [ -e "$CUDA_ROOT" ] && say "the CUDA Caffe in $CUDA_ROOT was built from other packages or for other GPUs (or never finished); rebuilding it"
    build_cuda_root
  fi
  rm -f "$CAFFE_DIR/host.env"
  printf 'MLN_CAFFE_ROOT=root-cuda\nMLN_CUDA_ARCH_BUILT=%q\n' "$(tr '\n' ' ' < "$CUDA_ROOT/.mln-cuda-arch")" > "$CAFFE_DIR/cuda.env.tmp"
  mv "$CAFFE_DIR/cuda.env.tmp" "$CAFFE_DIR/cuda.env"
  [ -e /dev/nvidiactl ] || say "note: no NVIDIA driver on this host: this Caffe runs in CPU mode here (scripts/caffe-env says so)"
}

main() {
  if [ "${1:-}" = --print-cuda-arch ]; then
    choose_cuda_arch
    printf 'bin: %s\nptx: %s\nwhy: %s\n' "$CUDA_BIN" "$CUDA_PTX" "$CUDA_ARCH_WHY"
    return 0
  fi
  mkdir -p "$CAFFE_DIR"
  # One setup at a time per state directory (several clones may share it).
  exec 9>"$CAFFE_DIR/.lock"
  flock 9
  case "$CAFFE_CHOICE" in
    host)
      host_caffe_works || die "MLN_CAFFE=host, but no working host Caffe: need 'caffe' on PATH and $HOST_PYTHON importing caffe with Python layers"
      record_host_caffe ;;
    embedded) use_embedded ;;
    embedded-cuda) use_embedded_cuda ;;
    auto)
      if host_caffe_works; then record_host_caffe
      elif host_has_nvidia_driver; then
        say "this host has an NVIDIA driver and no Caffe of its own: using the CUDA Caffe (MLN_CAFFE=embedded for the CPU one)"
        use_embedded_cuda
      else use_embedded; fi ;;
    *) die "MLN_CAFFE must be auto, host, embedded or embedded-cuda (got '$CAFFE_CHOICE')" ;;
  esac
}

main "$@"
