#!/usr/bin/env bash
# Regenerates the key table of docs/config.md from `fibertrain train --keys`.
#   tools/gen-config-doc.sh [path/to/fibertrain]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/trainer/fibertrain}
doc=docs/config.md
table=$("$bin" train --keys)
/usr/bin/python3 - "$doc" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- keys:begin -->", "<!-- keys:end -->"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
PY
echo "updated $doc"
