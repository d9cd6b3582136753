"""The plain-FastAPI peer: the cnn behind one sync-style endpoint, no batching, no queue.

What a first FastAPI model server looks like: read the raw body, run decode + forward +
softmax in FastAPI's thread pool, answer JSON. Run as a script (``fashion.py`` sits next to
it), in any environment with torch, PIL, fastapi and uvicorn::

    python bench/torchgate_bench/peers/fastapi_app.py --port 8380 --model-file app/nets/cnn.py \
        --manifest models/cnn.json [--threads 2] [--workers 1]

``POST /predict`` (body: the image bytes) -> ``{"index", "label", "probabilities"}``;
``GET /health``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import UnidentifiedImageError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script, in an environment without this package
from fashion import FashionModel, set_threads  # noqa: E402

_ENV_MODEL, _ENV_MANIFEST, _ENV_THREADS = "PEER_MODEL_FILE", "PEER_MANIFEST", "PEER_THREADS"


def create_app() -> FastAPI:
    """The app for the model named in the environment (uvicorn's workers re-import it)."""
    threads = set_threads(int(os.environ.get(_ENV_THREADS) or 0) or None)
    model = FashionModel(Path(os.environ[_ENV_MODEL]), Path(os.environ[_ENV_MANIFEST]))
    app = FastAPI(title="plain FastAPI peer")

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "torch_threads": threads}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            answers = await run_in_threadpool(model.predict, [body])
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            return JSONResponse({"detail": f"send one image as the body ({exc})."}, 400)
        return JSONResponse(answers[0])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8380)
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ[_ENV_MODEL] = str(args.model_file.resolve())
    os.environ[_ENV_MANIFEST] = str(args.manifest.resolve())
    os.environ[_ENV_THREADS] = str(args.threads)
    uvicorn.run(
        "fastapi_app:create_app",
        factory=True,
        app_dir=str(HERE),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
