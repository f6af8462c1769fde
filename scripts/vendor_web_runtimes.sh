#!/usr/bin/env bash
# Re-vendor the browser runtimes msvit-export --target web copies into a web folder (package
# data under msvit/web/runtime/): only the files the app loads, pinned, with their licences.
# Needs npm and the registry; msvit itself never runs this (installs and exports stay offline).
set -euo pipefail
ORT=1.31.1       # onnxruntime-web (MIT): the classifier
LITERT=2.5.3     # @litertjs/core + @litertjs/wasm-utils (Apache-2.0): BlazeFace + the classifier
here="$(cd "$(dirname "$0")/.." && pwd)"
dst="$here/msvit/web/runtime"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "onnxruntime-web@$ORT" "@litertjs/core@$LITERT" "@litertjs/wasm-utils@$LITERT" >/dev/null
for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
rm -rf "$dst/ort" "$dst/litert"; mkdir -p "$dst/ort" "$dst/litert"
# onnxruntime-web: only for .onnx classifiers (msvit-web build X.onnx); the default web folder
# runs its .tflite classifier on LiteRT.js (faster in the browser: docs/web.md)
o="onnxruntime-web-$ORT/package/dist"
cp "$o/ort.wasm.min.mjs" "$o/ort-wasm-simd-threaded.mjs" "$o/ort-wasm-simd-threaded.wasm" "$dst/ort/"
l="litertjs-core-$LITERT/package"
# relaxed SIMD (Chromium), its threaded build (cross-origin isolated pages), and the compat build
# LiteRT.js falls back to where relaxed SIMD is missing (Firefox, Safari)
for b in litert_wasm_internal litert_wasm_threaded_internal litert_wasm_compat_internal; do
  cp "$l/wasm/$b.js" "$l/wasm/$b.wasm" "$dst/litert/"
done
cp "litertjs-wasm-utils-$LITERT/package/dist/index.js" "$dst/litert/wasm-utils.js"
# the one change: its bare import becomes a relative one (no bundler, no import map needed)
sed 's#from "@litertjs/wasm-utils"#from "./wasm-utils.js"#' "$l/dist/index.js" > "$dst/litert/index.js"
sed -i '/^\/\/# sourceMappingURL=/d' "$dst"/ort/*.mjs "$dst"/litert/*.js
cp "$here/msvit/predict/models/LICENSE" "$dst/litert/LICENSE"  # Apache-2.0 text (the package ships none)
git -C "$here" show HEAD:msvit/web/runtime/ort/LICENSE > "$dst/ort/LICENSE" 2>/dev/null || true  # MIT, Microsoft
printf 'onnxruntime-web %s (npm), MIT licence: LICENSE\n' "$ORT" > "$dst/ort/VERSION"
printf '@litertjs/core %s and @litertjs/wasm-utils %s (npm), Apache-2.0: LICENSE\n' "$LITERT" "$LITERT" > "$dst/litert/VERSION"
chmod 644 "$dst"/ort/* "$dst"/litert/*   # npm's files carry exec bits; data files do not need them
(cd "$dst" && sha256sum ort/* litert/* | grep -v SHA256SUMS > SHA256SUMS)
echo "vendored into $dst"; du -sh "$dst"
