"""`edgeport serve RUN_DIR`: a local page that runs the run's exported files in the browser.

The page (web/public/) draws a digit, preprocesses it MNIST-style in JavaScript and runs each .onnx file
with onnxruntime-web and each batch-1 float-I/O .tflite file with LiteRT.js (@litertjs/core), both WASM,
both served from web/node_modules (pinned by web/package-lock.json, installed with `npm ci`): no CDN, so
the page works with the network unplugged. The server only hands out files; inference happens in the page.
`POST /api/predict` is the exception: server-side inference with the Python runtime, for scripts.

Routes: `/` the page, `/static/*` its JS/CSS, `/vendor/*` the runtimes' dist files (.js/.mjs/.wasm only),
`/artifacts/{name}` one artifact by manifest name, `/api/artifacts` what the browser can run and why not,
`/api/testset` test images for the parity mode, `/api/predict`, and FastAPI's `/docs` + `/openapi.json`.
Starlette's StaticFiles answers 404 to any path that resolves outside its folder (path traversal).
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

from edgeport.core.errors import ConfigError, EdgeportError, require
from edgeport.core.manifest import read_manifest

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the repo's web/: page sources + node_modules
# The browser runtimes: route -> (folder under web/node_modules, files that must exist for it to work).
VENDOR = {
    "ort": ("onnxruntime-web/dist", ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                                     "ort-wasm-simd-threaded.wasm")),
    "litert": ("@litertjs/core", ("dist/index.js", "wasm/litert_wasm_internal.js", "wasm/litert_wasm_internal.wasm")),
    "litert-utils": ("@litertjs/wasm-utils/dist", ("index.js",)),
}
VENDOR_SUFFIXES = (".js", ".mjs", ".wasm")  # the only files /vendor/* hands out (no maps, no package.json)
NPM_HINT = "run `npm ci` in web/ (see README, Browser demo)"

# Module scripts must come with a JavaScript MIME type, wasm with application/wasm (streaming compile).
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/wasm", ".wasm")


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only; anything else must be asked for with --host
    port: int = 8000  # TCP port
    max_upload_bytes: int = 2 * 1024 * 1024  # POST /api/predict bodies above this get 413, before decoding
    max_pixels: int = 4_000_000  # images whose header says more pixels than this get 413, before decoding
    max_testset: int = 10_000  # most test images /api/testset hands out in one call
    web_dir: Path = WEB_DIR  # page sources (public/) and the npm-installed runtimes (node_modules/)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if self.host != "localhost":
                raise ConfigError(f"--host must be an IP address or 'localhost', got {self.host!r}") from None
        if not (Path(self.web_dir) / "public" / "index.html").is_file():
            raise ConfigError(f"{self.web_dir}/public/index.html not found: `edgeport serve` needs the web/ "
                              "folder of a source checkout")


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
    norm_mean: float = 0.0  # model normalisation after scaling to [0, 1]: (x - mean) / std
    norm_std: float = 1.0
    labels: list[str] = field(default_factory=list)  # class names, index = class
    input_spec: dict = field(default_factory=dict)  # the file's whole input spec (edgeport.core.spec.InputSpec)


def vendor_status(web_dir: Path) -> dict[str, str | None]:
    """route -> None when the runtime's files are installed in web/node_modules, else the reason."""
    status = {}
    for route, (folder, needed) in VENDOR.items():
        root = Path(web_dir) / "node_modules" / folder
        missing = [f for f in needed if not (root / f).is_file()]
        status[route] = None if not missing else f"{root / missing[0]} is missing: {NPM_HINT}"
    return status


def runtime_versions(web_dir: Path) -> dict[str, str | None]:
    """Installed versions of the browser runtimes (from their package.json), None when absent."""
    out = {}
    for pkg in ("onnxruntime-web", "@litertjs/core"):
        p = Path(web_dir) / "node_modules" / pkg / "package.json"
        try:
            out[pkg] = json.loads(p.read_text(encoding="utf-8")).get("version")
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
        self.vendors = vendor_status(cfg.web_dir)
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
                output_name=model.output.name, output_dtype=model.output.dtype, norm_mean=spec.mean[0],
                norm_std=spec.std[0], labels=list(spec.labels), input_spec=spec.to_dict()))
        if not self.artifacts:
            raise ConfigError(f"{self.run_dir}: the manifest lists no artifacts to serve")

    def test_images(self):
        """(uint8 images (N, H, W, C), labels, source) of the run's test split (the dataset train.json names)."""
        if self._test is None:
            from edgeport.core.run import RunFolder

            data = RunFolder(self.run_dir).dataset(test_limit=self.cfg.max_testset)
            self._test = (data.test_images, data.test_labels, data.source)
        return self._test

    def predict(self, name: str, data: bytes, suffix: str, k: int, preprocess: bool) -> dict:
        """Top-k of one uploaded image through the Python runtime: `edgeport predict`'s own function, so
        the preprocessing is edgeport/core/images.py's (the page's preprocess.js mirrors it)."""
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
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    cfg.validate()
    served = ServedRun(run_dir, cfg)
    web = Path(cfg.web_dir)
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

    class _VendorFiles(StaticFiles):
        """StaticFiles that hands out only .js/.mjs/.wasm (the runtimes' dist files), 404 for the rest."""

        async def get_response(self, path, scope):
            if not path.endswith(VENDOR_SUFFIXES):
                raise HTTPException(404, "not found")
            return await super().get_response(path, scope)

    app.mount("/static", StaticFiles(directory=web / "public"), name="static")
    for route, (folder, _) in VENDOR.items():
        root = web / "node_modules" / folder
        if root.is_dir():
            app.mount(f"/vendor/{route}", _VendorFiles(directory=root), name=f"vendor-{route}")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(web / "public" / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/artifacts", summary="The run's artifacts and whether the page can run each")
    def artifacts() -> dict:
        return {"run": str(served.run_dir), "runtimes": runtime_versions(web),
                "missing_runtimes": {k: v for k, v in served.vendors.items() if v},
                "artifacts": [asdict(a) for a in served.artifacts]}

    @app.get("/artifacts/{name}", summary="One artifact file, by its manifest name")
    def artifact_file(name: str):
        if name not in served.files:
            raise HTTPException(404, f"no artifact named {name!r} in this run")
        return FileResponse(served.files[name], media_type="application/octet-stream")

    @app.get("/api/testset", summary="Test images (uint8, base64, row-major N x H x W) and labels")
    def testset(n: int = Query(200, ge=1, le=cfg.max_testset), offset: int = Query(0, ge=0)) -> dict:
        images, labels, source = served.test_images()
        if offset + n > len(images):
            raise HTTPException(422, f"asked for images {offset}..{offset + n} of a test set of {len(images)}")
        batch = images[offset : offset + n]
        return {"source": source, "offset": offset, "shape": list(batch.shape), "labels": labels[offset : offset + n]
                .tolist(), "images_b64": base64.b64encode(batch.tobytes()).decode("ascii")}

    @app.post(
        "/api/predict",
        summary="Classify one image with the Python runtime (server-side)",
        description=(f"Send the image bytes as the request body (PNG, JPEG, BMP, ...; Content-Type image/* or "
                     f"application/octet-stream). Bodies over {cfg.max_upload_bytes} bytes, or images over "
                     f"{cfg.max_pixels} pixels by their header, get 413 before decoding; other content types "
                     "get 415; bytes that are not an image get 415. By default the image gets MNIST-style "
                     "preprocessing (edgeport.core.images); preprocess=false expects an image already "
                     "the model's size, light ink on dark."),
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
