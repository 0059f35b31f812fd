"""`edgeport serve RUN_DIR`: a local page that runs the run's exported files in the browser.

The page (edgeport/web/, package data) takes an input that fits the model's input spec: a drawn digit for
`mnist` models, an image file or a camera snapshot for every other model. It preprocesses it in JavaScript
exactly as edgeport/core/images.py does and runs each .onnx file with onnxruntime-web and each batch-1
float-I/O .tflite file with LiteRT.js (@litertjs/core), both WASM. The runtimes are npm packages pinned by
web/package-lock.json; only the files the page loads (edgeport/web/vendor.json) are served, from
web/node_modules in a source checkout (`npm ci`) or from edgeport/web/vendor/ in an installed wheel (setup.py
copies them in at build time): no CDN, so the page works with the network unplugged. The server only hands out
files; inference happens in the page. `POST /api/predict` is the exception: server-side inference with the
Python runtime, for scripts.

Routes: `/` the page, `/static/*` its JS/CSS, `/vendor/{route}/*` the runtimes' files (vendor.json's list only),
`/artifacts/{name}` one artifact by manifest name, `/api/artifacts` what the browser can run and why not,
`/api/testset` test images for the parity mode, `/api/predict`, and FastAPI's `/docs` + `/openapi.json`.
Every file route answers from a fixed list of names, so no path can reach outside it (path traversal).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose types are imported inside
# create_app (fastapi is an optional extra), so they must be real objects, not strings.
import base64
import io as _io
import ipaddress
import json
import mimetypes
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import ConfigError, EdgeportError, require
from edgeport.core.manifest import read_manifest

PAGE_DIR = Path(__file__).resolve().parent / "web"  # the page (package data): index.html, its JS/CSS, vendor.json
PAGE_FILES = ("app.js", "preprocess.js", "style.css")  # what /static/* hands out
CHECKOUT_NODE_MODULES = Path(__file__).resolve().parent.parent / "web" / "node_modules"  # a source checkout's npm ci
NPM_HINT = "run `npm ci` in web/ of the source checkout (see README, Browser demo), or install edgeport from a wheel"

# Module scripts must come with a JavaScript MIME type, wasm with application/wasm (streaming compile).
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/wasm", ".wasm")


@dataclass(frozen=True)
class VendorRuntime:
    """One browser runtime the page loads from /vendor/{route}/ (an entry of edgeport/web/vendor.json)."""

    route: str  # the URL segment after /vendor/
    package: str  # the npm package, a folder under node_modules/ (or the wheel's edgeport/web/vendor/)
    folder: str  # the package's folder served at /vendor/{route}/ ("" for the package root)
    files: tuple[str, ...]  # the only files served, relative to that folder

    def root(self, vendor_dir: Path) -> Path:
        return Path(vendor_dir) / self.package / self.folder


def read_vendor_table(path: Path = PAGE_DIR / "vendor.json") -> dict[str, VendorRuntime]:
    """route -> VendorRuntime, from vendor.json (also read by setup.py, which copies the same files into the wheel)."""
    table = json.loads(Path(path).read_text(encoding="utf-8"))["runtimes"]
    return {route: VendorRuntime(route, e["package"], e["folder"], tuple(e["files"])) for route, e in table.items()}


VENDOR = read_vendor_table()


def default_vendor_dir() -> Path:
    """Where the runtimes' npm packages are: edgeport/web/vendor/ of an installed wheel, else web/node_modules/ of
    the source checkout this module runs from (an editable install)."""
    packaged = PAGE_DIR / "vendor"
    return packaged if packaged.is_dir() else CHECKOUT_NODE_MODULES


VENDOR_DIR = default_vendor_dir()


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only; anything else must be asked for with --host
    port: int = 8000  # TCP port
    max_upload_bytes: int = 2 * 1024 * 1024  # POST /api/predict bodies above this get 413, before decoding
    max_pixels: int = 4_000_000  # images whose header says more pixels than this get 413, before decoding
    max_testset: int = 10_000  # most test images /api/testset hands out in one call
    max_testset_bytes: int = 64 * 1024 * 1024  # and most pixel bytes (N x H x W x C) in one call
    page_dir: Path = PAGE_DIR  # the page: index.html, app.js, preprocess.js, style.css
    vendor_dir: Path = VENDOR_DIR  # the runtimes' npm packages (node_modules layout, vendor.json's files)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if self.host != "localhost":
                raise ConfigError(f"--host must be an IP address or 'localhost', got {self.host!r}") from None
        missing = [n for n in ("index.html", *PAGE_FILES) if not (Path(self.page_dir) / n).is_file()]
        if missing:
            raise ConfigError(f"{Path(self.page_dir) / missing[0]} not found: this edgeport install lacks its page "
                              "files; reinstall edgeport")


@dataclass(frozen=True)
class BrowserArtifact:
    """One manifest artifact as the page sees it: where to fetch it, its I/O, and whether the page can run it."""

    name: str
    format: str
    precision: str
    bytes: int
    url: str  # /artifacts/{name}
    runtime: str | None  # "onnxruntime-web" | "litert.js" | None
    runnable: bool  # True when the page's runtime can run it as exported
    reason: str | None  # why not, when runnable is False
    input_name: str = ""
    input_shape: list[int] = field(default_factory=list)  # -1 for a dynamic dimension
    input_dtype: str = ""
    output_name: str = ""
    output_dtype: str = ""
    # The file's whole input spec (edgeport.core.spec.InputSpec.to_dict): size, channels, layout, scale, mean/std,
    # class labels, preprocessing and resize mode; the page preprocesses and names classes by it.
    input_spec: dict = field(default_factory=dict)


def vendor_status(vendor_dir: Path) -> dict[str, str | None]:
    """route -> None when all of the runtime's files are installed under `vendor_dir`, else the reason."""
    status = {}
    for route, rt in VENDOR.items():
        missing = [f for f in rt.files if not (rt.root(vendor_dir) / f).is_file()]
        status[route] = None if not missing else f"{rt.root(vendor_dir) / missing[0]} is missing: {NPM_HINT}"
    return status


def runtime_versions(vendor_dir: Path) -> dict[str, str | None]:
    """Installed versions of the browser runtimes (from their package.json), None when absent."""
    out = {}
    for pkg in dict.fromkeys(rt.package for rt in VENDOR.values()):
        try:
            out[pkg] = json.loads((Path(vendor_dir) / pkg / "package.json").read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            out[pkg] = None
    return out


def browser_support(fmt: str, input_spec, output_spec, vendors: dict[str, str | None]) -> tuple[str | None, str | None]:
    """(runtime, reason): the page's runtime for this file, and why it cannot run it (None when it can)."""
    if fmt == "onnx":
        if vendors["ort"]:
            return "onnxruntime-web", vendors["ort"]
        if input_spec.dtype != "float32" or output_spec.dtype != "float32":
            return "onnxruntime-web", (f"the page feeds float32 images; this file takes {input_spec.dtype} "
                                       f"and gives {output_spec.dtype}")
        return "onnxruntime-web", None
    if fmt == "tflite":
        if vendors["litert"] or vendors["litert-utils"]:
            return "litert.js", vendors["litert"] or vendors["litert-utils"]
        problems = []
        if any(d < 1 for d in input_spec.shape):
            problems.append(f"a dynamic input shape {list(input_spec.shape)}")
        if input_spec.dtype != "float32" or output_spec.dtype != "float32":
            problems.append(f"{input_spec.dtype} input / {output_spec.dtype} output")
        if problems:
            return "litert.js", ("LiteRT.js needs a static batch-1 float32 input and output; this file has "
                                 f"{' and '.join(problems)}: export web_tflite_fp32 / web_tflite_int8 for the browser")
        return "litert.js", None
    return None, f"no browser runtime for format {fmt!r}"


class ServedRun:
    """A run folder opened for serving: its manifest's artifacts, loaded once with the Python runtime."""

    def __init__(self, run_dir: str | Path, cfg: ServeConfig):
        from edgeport.runtime import load

        self.run_dir = Path(run_dir)
        self.cfg = cfg
        manifest = read_manifest(self.run_dir)
        self.vendors = vendor_status(cfg.vendor_dir)
        self.files: dict[str, Path] = {}
        self.models: dict = {}
        self.artifacts: list[BrowserArtifact] = []
        self._lock = threading.Lock()  # one interpreter call at a time: LiteRT interpreters are not thread-safe
        self._test = None
        for a in manifest["artifacts"]:
            path = (self.run_dir / a["path"]).resolve()
            base = dict(name=a["name"], format=a["format"], precision=a.get("precision", ""),
                        bytes=int(a.get("bytes", 0)), url=f"/artifacts/{a['name']}")
            try:
                model = load(path)
                model.image_shape  # noqa: B018 - raises InputError when the input is not an image
            except (EdgeportError, OSError, ValueError, RuntimeError) as exc:  # one bad file must not stop the rest
                self.artifacts.append(BrowserArtifact(**base, runtime=None, runnable=False, reason=str(exc)))
                continue
            runtime, reason = browser_support(a["format"], model.input, model.output, self.vendors)
            spec = model.spec
            self.files[a["name"]] = path
            self.models[a["name"]] = model
            self.artifacts.append(BrowserArtifact(
                **base, runtime=runtime, runnable=reason is None, reason=reason,
                input_name=model.input.name, input_shape=list(model.input.shape), input_dtype=model.input.dtype,
                output_name=model.output.name, output_dtype=model.output.dtype, input_spec=spec.to_dict()))
        if not self.artifacts:
            raise ConfigError(f"{self.run_dir}: the manifest lists no artifacts to serve")

    def test_images(self):
        """(uint8 images (N, H, W, C), labels, source) of the run's test split (the dataset train.json names)."""
        if self._test is None:
            from edgeport.core.run import RunFolder

            data = RunFolder(self.run_dir).dataset(test_limit=self.cfg.max_testset)
            self._test = (data.test_images, np.asarray(data.test_labels), data.source)
        return self._test

    def predict(self, name: str, data: bytes, suffix: str, k: int, preprocess: bool) -> dict:
        """Top-k of one uploaded image through the Python runtime: `edgeport predict`'s own function, so
        the preprocessing is the model's input spec's, by edgeport/core/images.py (the page's preprocess.js
        mirrors it)."""
        import tempfile

        from edgeport.runtime.predict import predict_files

        with tempfile.TemporaryDirectory(prefix="edgeport-serve-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            with self._lock:
                t0 = time.perf_counter()
                result = predict_files(self.models[name], [path], top=k, preprocess=preprocess,
                                       max_pixels=self.cfg.max_pixels)
                ms = (time.perf_counter() - t0) * 1e3
        pred = result.predictions[0]
        if pred.error is not None:
            raise _Http(400, pred.error.replace(str(path), "upload"))
        return {"artifact": name, "top": [{"label": lab, "probability": p} for lab, p in pred.top],
                "index": pred.index, "latency_ms": ms, "preprocess": result.preprocess,
                "notes": result.notes}


class _Http(Exception):
    """An HTTP error raised outside FastAPI's request scope (turned into HTTPException by the route)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def create_app(run_dir: str | Path, cfg: ServeConfig = ServeConfig()):
    """The FastAPI app serving `run_dir`: page, runtimes, artifacts, test images and /api/predict."""
    fastapi = require("fastapi", "serve")
    from fastapi import HTTPException, Query, Request
    from fastapi.responses import FileResponse
    from starlette.concurrency import run_in_threadpool

    cfg.validate()
    served = ServedRun(run_dir, cfg)
    page, vendor_dir = Path(cfg.page_dir), Path(cfg.vendor_dir)
    app = fastapi.FastAPI(
        title="edgeport serve",
        description=f"In-browser inference of the exported files of `{served.run_dir}`; "
                    "POST /api/predict runs the Python runtime server-side.",
        version="1",
    )
    app.state.served = served

    @app.middleware("http")
    async def isolate(request, call_next):
        # Cross-origin isolation: every file is same-origin anyway, and it gives the page's performance.now()
        # its fine (5 us) resolution instead of 100 us, which the per-inference latency needs.
        response = await call_next(request)
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(page / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in PAGE_FILES:
            raise HTTPException(404, "not found")
        return FileResponse(page / name, headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/{route}/{path:path}", include_in_schema=False)
    def vendor(route: str, path: str):
        rt = VENDOR.get(route)
        if rt is None or path not in rt.files or not (rt.root(vendor_dir) / path).is_file():
            raise HTTPException(404, "not found")
        return FileResponse(rt.root(vendor_dir) / path)

    @app.get("/api/artifacts", summary="The run's artifacts and whether the page can run each")
    def artifacts() -> dict:
        return {"run": str(served.run_dir), "runtimes": runtime_versions(vendor_dir),
                "missing_runtimes": {k: v for k, v in served.vendors.items() if v},
                "artifacts": [asdict(a) for a in served.artifacts]}

    @app.get("/artifacts/{name}", summary="One artifact file, by its manifest name")
    def artifact_file(name: str):
        if name not in served.files:
            raise HTTPException(404, f"no artifact named {name!r} in this run")
        return FileResponse(served.files[name], media_type="application/octet-stream")

    @app.get("/api/testset", summary="Test images (uint8 pixels, base64, row-major N x H x W x C) and labels",
             description="The run's test split as the model takes it (already its size), channels last; `shape` "
                         "is (N, H, W, C). The page normalises them by each artifact's input spec.")
    def testset(n: int = Query(200, ge=1, le=cfg.max_testset), offset: int = Query(0, ge=0)) -> dict:
        images, labels, source = served.test_images()
        if offset + n > len(images):
            raise HTTPException(422, f"asked for images {offset}..{offset + n} of a test set of {len(images)}")
        per_image = int(np.prod(np.shape(images[0]))) if len(images) else 0
        if n * per_image > cfg.max_testset_bytes:
            raise HTTPException(422, f"{n} images of {per_image} bytes are over the limit of {cfg.max_testset_bytes} "
                                     f"bytes per call; ask for at most {cfg.max_testset_bytes // per_image}")
        batch = np.ascontiguousarray(images[offset : offset + n], dtype=np.uint8)  # a lazy split reads just these
        if batch.ndim == 3:
            batch = batch[..., None]
        return {"source": source, "offset": offset, "shape": list(batch.shape),
                "labels": labels[offset : offset + n].tolist(),
                "images_b64": base64.b64encode(batch.tobytes()).decode("ascii")}

    @app.post(
        "/api/predict",
        summary="Classify one image with the Python runtime (server-side)",
        description=(f"Send the image bytes as the request body (PNG, JPEG, BMP, ...; Content-Type image/* or "
                     f"application/octet-stream). Bodies over {cfg.max_upload_bytes} bytes, or images over "
                     f"{cfg.max_pixels} pixels by their header, get 413 before decoding; other content types "
                     "get 415; bytes that are not an image get 415. By default the image gets the model's own "
                     "preprocessing, by its input spec (edgeport.core.images: MNIST-style for digit models, "
                     "resized to the model's size for the others); preprocess=false expects an image "
                     "already the model's size (and, for digit models, light ink on dark)."),
        openapi_extra={"requestBody": {"required": True, "content": {
            m: {"schema": {"type": "string", "format": "binary"}}
            for m in ("image/png", "image/jpeg", "application/octet-stream")}}},
        responses={404: {"description": "unknown artifact"}, 413: {"description": "upload too large"},
                   415: {"description": "not an image"}, 400: {"description": "empty body or no ink"}},
    )
    async def predict(request: Request, artifact: str | None = Query(None, description="manifest name; "
                      "default: the first artifact"), k: int = Query(3, ge=1, le=1000),
                      preprocess: bool = Query(True)) -> dict:
        name = artifact or next(iter(served.models), None)
        if name not in served.models:
            raise HTTPException(404, f"no loadable artifact named {name!r} in this run")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
            raise HTTPException(415, f"expected an image body (image/* or application/octet-stream), got "
                                     f"{ctype or 'no Content-Type'!r}")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_upload_bytes:
            raise HTTPException(413, f"upload of {length} bytes is over the limit of {cfg.max_upload_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a missing/false length cannot get past
            body += chunk
            if len(body) > cfg.max_upload_bytes:
                raise HTTPException(413, f"upload is over the limit of {cfg.max_upload_bytes} bytes")
        if not body:
            raise HTTPException(400, "empty request body: send the image bytes")
        suffix = await run_in_threadpool(_check_image, bytes(body), cfg.max_pixels)
        try:
            return await run_in_threadpool(served.predict, name, bytes(body), suffix, k, preprocess)
        except _Http as exc:
            raise HTTPException(exc.status, exc.detail) from None
        except EdgeportError as exc:
            raise HTTPException(400, str(exc)) from None

    def _check_image(data: bytes, max_pixels: int) -> str:
        """415 when it is not an image, 413 past `max_pixels` by its header (before decoding), 415 when it does not
        decode. Returns a file suffix for it."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(_io.BytesIO(data)) as image:  # lazy: reads the header, not the pixels
                w, h = image.size
                fmt = (image.format or "png").lower()
        except Image.DecompressionBombError:  # Pillow's own header check, far past ours
            raise HTTPException(413, f"image is over the limit of {max_pixels} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise HTTPException(415, "the body is not an image Pillow can read (PNG, JPEG, BMP, GIF, ...)") from None
        if w * h > max_pixels:
            raise HTTPException(413, f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
        try:  # within the limits: decode once here, so a broken image is a 415, not a preprocessing error
            with Image.open(_io.BytesIO(data)) as image:
                image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise HTTPException(415, f"the image could not be decoded ({exc})") from None
        return f".{fmt}"

    return app


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    """Raise ConfigError naming the address when it cannot be listened on (in use, or not this machine's)."""
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.bind(addr)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from None


def serve(run_dir: str | Path, cfg: ServeConfig = ServeConfig()) -> None:
    """Serve `run_dir` with uvicorn until Ctrl-C. Binds to loopback unless `cfg.host` says otherwise."""
    uvicorn = require("uvicorn", "serve")
    _check_port_free(cfg.host, cfg.port)
    app = create_app(run_dir, cfg)
    served: ServedRun = app.state.served
    print(f"edgeport serve: {served.run_dir} on http://{cfg.host}:{cfg.port}/  (API docs: /docs)")
    for a in served.artifacts:
        print(f"  {a.name:<20} {'browser: ' + a.runtime if a.runnable else 'unavailable: ' + (a.reason or '')}")
    if not is_loopback(cfg.host):
        print(f"edgeport serve: listening on {cfg.host} as asked with --host: reachable beyond this machine")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
