# Shared by scripts/demo and scripts/test: make .venv and install the project into it.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=".venv/.crdtsync-installed"
HASH="$(sha256sum pyproject.toml | cut -d' ' -f1)-${CRDTSYNC_EXTRAS:-test}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[${CRDTSYNC_EXTRAS:-test}]"
  echo "$HASH" > "$STAMP"
fi
