#!/usr/bin/env bash
# Re-pin requirements/constraints.txt from the current .venv (after changing requirements/*.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
{
  echo "# Exact versions of every dependency, verified together on Debian 12 / Python 3.11 (regenerate: make constraints)."
  echo "# torch is deliberately absent: scripts/setup.sh keeps a torch you installed (e.g. CUDA) or installs \$TORCH_SPEC."
  .venv/bin/python -m pip freeze --exclude-editable \
    | grep -viE '^(torch|nvidia-|triton|dreamzero|embodiment|pip)[=-]' | grep -v '@ file' | sort -f
} > requirements/constraints.txt
echo "wrote requirements/constraints.txt ($(wc -l < requirements/constraints.txt) lines)"
