"""The c_array target: a C source + header that compile, hold exactly the int8 .tflite bytes, and record
the flash and tensor-arena figures TFLM measured."""

import shutil
import subprocess

import pytest

from edgeport.core.errors import ModelFileError
from edgeport.runtime.tflm import parse_c_array

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def c_run(tiny_run, tmp_path_factory):
    """The tiny model exported to tflite_int8 and c_array in one export (so they must be the same bytes)."""
    from edgeport.export.export import ExportConfig, export_model

    run = tmp_path_factory.mktemp("c_run")
    arts = export_model(tiny_run / "model.keras", run, ExportConfig(targets=("tflite_int8", "c-array"),
                                                                    calibration_size=64, validation_size=64),
                        training={"method": "float", "model": "tiny"})
    return run, {a.name: a for a in arts}


def test_files_and_manifest_figures(c_run):
    run, arts = c_run
    a = arts["c_array"]
    conv = a.lineage["conversion"]
    tflite = run / arts["tflite_int8"].path
    assert a.path == "artifacts/c_array.c" and (run / "artifacts" / "c_array.h").is_file()
    assert a.format == "tflm" and a.precision == "int8"
    assert conv["flash_bytes"] == tflite.stat().st_size
    assert 0 < conv["arena_min_bytes"] <= conv["arena_bytes"] < 1 << 20
    assert "RecordingMicroAllocator" in conv["arena_source"]
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(conv["ops"])
    assert a.metadata == arts["tflite_int8"].metadata and a.metadata["labels"]
    assert a.validation["agreement"] >= 0.95
    assert not list((run / "artifacts").glob(".*partial*"))  # no temporary files left behind
    header = (run / "artifacts" / "c_array.h").read_text()
    assert f"#define EDGEPORT_ARENA_BYTES {conv['arena_bytes']}u" in header
    assert f"#define EDGEPORT_MODEL_BYTES {conv['flash_bytes']}u" in header


def test_c_array_holds_exactly_the_tflite_bytes(c_run):
    run, arts = c_run
    source = (run / "artifacts" / "c_array.c").read_text()
    assert "_Alignas(16)" in source and "__attribute__((aligned(16)))" in source
    assert parse_c_array(source) == (run / arts["tflite_int8"].path).read_bytes()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_compiles_and_round_trips_through_the_compiler(c_run, tmp_path):
    """cc -c the generated files, link a main that dumps the array, and compare with the .tflite."""
    run, arts = c_run
    art = run / "artifacts"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-c", str(art / "c_array.c"), "-o",
                    str(tmp_path / "c_array.o")], check=True, capture_output=True)
    main = tmp_path / "dump.c"
    main.write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include "c_array.h"\n'
        "int main(void) {\n"
        "  if ((uintptr_t)edgeport_model % 16 != 0) return 3;\n"
        "  if (edgeport_model_len != EDGEPORT_MODEL_BYTES) return 4;\n"
        "  fwrite(edgeport_model, 1, edgeport_model_len, stdout);\n  return 0;\n}\n")
    exe = tmp_path / "dump"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", f"-I{art}", str(main), str(tmp_path / "c_array.o"),
                    "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], capture_output=True)
    assert out.returncode == 0 and out.stdout == (run / arts["tflite_int8"].path).read_bytes()


def test_tflm_runs_in_exactly_the_recorded_arena(c_run, mnist_test):
    run, arts = c_run
    conv = arts["c_array"].lineage["conversion"]
    images, _ = mnist_test
    from edgeport.runtime.tflm import TflmModel

    tight = TflmModel(run / "artifacts" / "c_array.c", arena_size=conv["arena_bytes"])
    assert tight.predict(images[:10]).shape == (10, 10)
    assert tight.arena_bytes() == conv["arena_bytes"]
    if conv["arena_min_bytes"] > 64:
        with pytest.raises(ModelFileError, match="TFLM cannot load"):
            TflmModel(run / "artifacts" / "c_array.c", arena_size=conv["arena_min_bytes"] - 64)


def test_malformed_c_array(tmp_path):
    with pytest.raises(ModelFileError, match="no `unsigned char"):
        parse_c_array("int x = 3;", "x.c")
    with pytest.raises(ModelFileError, match="outside 0..255"):
        parse_c_array("const unsigned char m[] = {0x01, 0x100};", "x.c")
    with pytest.raises(ModelFileError, match="other than integer"):
        parse_c_array("const unsigned char m[] = {0x01, foo};", "x.c")


def test_report_says_when_tflm_is_absent(c_run, monkeypatch):
    import sys

    from edgeport.core.manifest import write_manifest
    from edgeport.pipeline import evaluate_run

    run, arts = c_run
    write_manifest(run, list(arts.values()))
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # as if the `micro` extra were not installed
    rows = {r["name"]: r for r in evaluate_run(run, None)["artifacts"]}
    assert rows["tflite_int8"]["status"] == "ok"
    assert rows["c_array"]["status"] == "failed" and "pip install 'edgeport[micro]'" in rows["c_array"]["error"]
