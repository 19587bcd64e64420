#!/usr/bin/env bash
# Compiles the TypeScript of an app directory (runtime folders of a checkout) to JavaScript in
# place, as the image runs it: every .ts and bin/ emitted without a type check (`make typecheck`
# does that), relative imports renamed .js (rewriteRelativeImportExtensions), then the .ts files
# removed; node_modules and the console's browser scripts are left as they are. Node would
# otherwise strip types at load with a WebAssembly stripper, about 18 MB in every process and
# worker thread that loads a .ts file (bench/README.md).
# Usage: image/compile.sh APP_DIR [TSC]   (TSC: the compiler to run, `tsc` on the PATH by default)
set -euo pipefail
(($# >= 1)) || { echo "usage: $0 APP_DIR [TSC]" >&2; exit 2; }
app=$(cd "$1" && pwd) tsc=${2:-tsc}
repo="$(cd "$(dirname "$0")/.." && pwd)"
out=$(mktemp -d "${TMPDIR:-/tmp}/airlock-compile.XXXXXX")
trap 'rm -rf "$out"' EXIT
cat >"$out/tsconfig.json" <<JSON
{
  "extends": "$repo/tsconfig.json",
  "compilerOptions": {"noEmit": false, "noCheck": true, "checkJs": false, "types": [], "newLine": "lf",
    "rootDir": "$app", "outDir": "$out/js"},
  "include": ["$app"],
  "exclude": ["$app/node_modules", "$app/console/public"]
}
JSON
"$tsc" -p "$out/tsconfig.json"
find "$app" -name '*.ts' -not -path "$app/node_modules/*" -delete
(cd "$out/js" && find . -name '*.js' -exec cp --parents {} "$app" \;)
