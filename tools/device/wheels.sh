#!/usr/bin/env bash
# Download, here, every wheel that `python -m app serve`, the bench and the device check's tests
# import and that the GPU machine's image may lack or hold in another version, into .whl/ (git
# ignores it). The image has python3.12 with torch, torchvision, numpy, pillow, uvloop, pytest,
# hypothesis and packaging; everything else on the serve and test paths is carried, pinned to
# the versions this checkout is tested with, so the device runs what CI runs:
#   fastapi imports opentelemetry-api when it loads; asgi-lifespan (tests/conftest.py) needs
#   sniffio; pydantic-core needs typing-extensions >= 4.16 (the image's is older or unknown);
#   the image's grpcio and protobuf may be older than app/api/grpc/proto's generated code needs.
# tools/device/imports.py, the check's first step, verifies every carried wheel's own
# requirements against what the device then imports.
#   bash tools/device/wheels.sh                  # for the device (cp312, manylinux x86_64)
#   PYVER=3.11 DEST=/tmp/w bash tools/device/wheels.sh   # the same set for this python
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER=${PYVER:-3.12}
DEST=${DEST:-.whl}
rm -rf "$DEST" && mkdir -p "$DEST"
pure=(
  fastapi==0.165.0 fastapi-offline==1.7.7 starlette==1.10.0 opentelemetry-api==1.45.2
  annotated-doc==0.0.7
  pydantic==2.14.4 pydantic-settings==2.16.3 typing-inspection==0.4.5 annotated-types==0.8.0
  typing-extensions==4.16.0 python-dotenv==1.2.4 python-multipart==0.0.34
  uvicorn==0.54.0 h11==0.16.0 click==8.5.1
  anyio==4.16.0 sniffio==1.3.1 idna==3.20 asgi-lifespan==2.1.0
  httpx==0.28.1 httpcore==1.0.9 certifi==2026.10.19.post1
  typer==0.29.2 shellingham==1.5.4 rich==15.0.0 pygments==2.21.0 markdown-it-py==4.3.0
  mdurl==0.1.2 prometheus-client==0.26.0 redis==8.1.0
)
# app.errors and the gRPC adapter import grpc at start-up; the generated code in
# app/api/grpc/proto refuses runtimes older than the ones that generated it
binary=(pydantic-core==2.50.5 httptools==0.9.0 orjson==3.13.0 grpcio==1.85.3 protobuf==6.33.6
  pyspng==0.1.4 zttp==0.0.35)
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: -d "$DEST" "${pure[@]}"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$DEST" "${binary[@]}"
# one version of each: two stop the whole install on the device
duplicates=$(ls "$DEST" | sed 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [[ -n "$duplicates" ]]; then echo "two versions of: $duplicates" >&2; exit 1; fi
ls "$DEST"
du -sh "$DEST"
