#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (its python3 is 3.12 with torch, torchvision,
# numpy, pillow, httpx, anyio, rich, uvloop, pytest and hypothesis, but no web stack) into .whl/,
# which git ignores. Versions are the ones this checkout is tested with.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
pure=(fastapi==0.165.0 starlette==1.10.0 pydantic==2.13.4 pydantic-settings==2.14.1
      python-dotenv==1.2.2 typing-inspection==0.4.2 annotated-types==0.7.0 annotated-doc==0.0.7
      uvicorn==0.54.0 python-multipart==0.0.34 asgi-lifespan==2.1.0 typer==0.29.2
      prometheus-client==0.26.0 redis==8.1.0)
binary=(pydantic-core==2.46.4 httptools==0.9.0 orjson==3.13.0)
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "${pure[@]}"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${binary[@]}"
ls .whl
du -sh .whl
