"""`predict_files` on real images: right digits on the sample images, int8 agrees with float32, and
files copied alone still know their labels and normalisation."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeport.core.errors import InputError
from edgeport.runtime import load
from edgeport.runtime.metadata import read_tflite_metadata
from edgeport.runtime.predict import predict_files

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "digits").iterdir())


def test_examples_exist_and_name_their_digit():
    assert len(EXAMPLES) >= 10
    assert {p.name[0] for p in EXAMPLES} == set("0123456789")
    assert any("mnist" in p.name for p in EXAMPLES) and any("mnist" not in p.name for p in EXAMPLES)
    assert any(p.suffix == ".jpg" for p in EXAMPLES)


@pytest.mark.parametrize("name", ["tflite_int8", "tflite_fp32", "onnx_fp32"])
def test_every_sample_image_is_read_right(seed_run, name):
    path = next((seed_run / "artifacts").glob(f"{name}.*"))
    result = predict_files(path, EXAMPLES)
    assert result.notes == []  # our files carry metadata: no fallback
    wrong = [(Path(p.path).name, p.top) for p in result.predictions if p.label != Path(p.path).name[0]]
    assert wrong == []


def test_int8_agrees_with_float32_on_every_sample(seed_run):
    int8 = predict_files(seed_run / "artifacts" / "tflite_int8.tflite", EXAMPLES, top=10)
    fp32 = predict_files(seed_run / "artifacts" / "tflite_fp32.tflite", EXAMPLES, top=10)
    assert [p.label for p in int8.predictions] == [p.label for p in fp32.predictions]
    for a, b in zip(int8.predictions, fp32.predictions, strict=True):
        pa, pb = dict(a.top), dict(b.top)
        assert max(abs(pa[k] - pb[k]) for k in pa) < 0.1
        assert len(a.top) == 10 and a.top[0][1] >= a.top[1][1] >= a.top[-1][1]


@pytest.mark.parametrize("name", ["tflite_int8.tflite", "onnx_fp32.onnx"])
def test_file_copied_alone_keeps_labels_and_normalisation(seed_run, tmp_path, name):
    lonely = tmp_path / "elsewhere" / name
    lonely.parent.mkdir()
    shutil.copy(seed_run / "artifacts" / name, lonely)
    m = load(lonely)
    assert json.loads(m.metadata["labels"]) == [str(i) for i in range(10)]
    assert (m.spec.mean, m.spec.std) == ((0.0,), (1.0,)) and m.spec.preprocessing == "mnist"
    result = predict_files(m, EXAMPLES[:4])
    assert result.notes == [] and all(p.label == Path(p.path).name[0] for p in result.predictions)


def test_embedded_labels_and_normalisation_are_what_predict_uses(seed_run, tmp_path):
    """Rewrite the metadata of a copy: predict must follow the file, not a built-in default."""
    pytest.importorskip("tensorflow")
    from edgeport.export.metadata import embed_tflite_metadata

    src = seed_run / "artifacts" / "tflite_fp32.tflite"
    meta = read_tflite_metadata(src)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    relabelled = tmp_path / "named.tflite"
    relabelled.write_bytes(embed_tflite_metadata(src.read_bytes(), {**meta, "labels": json.dumps(names)}))
    result = predict_files(relabelled, EXAMPLES)
    assert [p.label for p in result.predictions] == [names[int(Path(p.path).name[0])] for p in result.predictions]

    short = tmp_path / "short.tflite"
    short.write_bytes(embed_tflite_metadata(src.read_bytes(), {**meta, "labels": json.dumps(names[:9])}))
    result = predict_files(short, EXAMPLES[:2])
    assert result.notes == ["short.tflite: its 9 labels do not fit its 10 outputs; showing class indices"]
    assert [p.label for p in result.predictions] == [p.name[0] for p in EXAMPLES[:2]]

    shifted = tmp_path / "shifted.tflite"
    shifted.write_bytes(embed_tflite_metadata(src.read_bytes(), {**meta, "norm_mean": "0.5", "norm_std": "0.25"}))
    m, base = load(shifted), load(src)
    assert (m.spec.mean, m.spec.std) == ((0.5,), (0.25,))
    x = np.array([[[0, 255]]], np.uint8).repeat(28, 1).repeat(14, 2)
    assert np.allclose(m.prepare(x), (base.prepare(x) - 0.5) / 0.25)


def test_model_without_metadata_falls_back_to_mnist_and_says_so(seed_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(seed_run / "artifacts" / "onnx_fp32.onnx"))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    result = predict_files(bare, EXAMPLES[:3])
    assert len(result.notes) == 1 and "no edgeport metadata" in result.notes[0] and "MNIST defaults" in result.notes[0]
    assert all(p.label == Path(p.path).name[0] for p in result.predictions)


def test_model_whose_input_is_not_an_image(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"])],
        "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 10])], initializer=[w])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(InputError, match="not an image"):
        predict_files(path, EXAMPLES[:1])


def test_bad_images_get_an_error_and_the_rest_still_run(seed_run, tmp_path):
    blank, broken = tmp_path / "blank.png", tmp_path / "broken.png"
    from PIL import Image

    Image.new("L", (40, 40), 255).save(blank)
    broken.write_bytes(b"no image here")
    result = predict_files(seed_run / "artifacts" / "tflite_int8.tflite", [blank, EXAMPLES[0], broken])
    errors = [p.error for p in result.predictions]
    assert "no ink found" in errors[0] and errors[1] is None and "cannot decode" in errors[2]
    assert result.predictions[1].label == EXAMPLES[0].name[0]
    assert result.to_dict()["predictions"][0] == {"image": str(blank), "error": errors[0]}


def test_predict_and_tflm_never_import_tensorflow(seed_run):
    """`edgeport predict` and the TFLM backend with TensorFlow made unimportable, then check sys.modules."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'tf2onnx', 'onnx'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        from edgeport.cli import main
        assert main(['predict', {str(seed_run / "artifacts" / "tflite_int8.tflite")!r}, {str(EXAMPLES[0])!r}]) == 0
        try:
            import tflite_micro  # noqa: F401
        except ImportError:
            pass
        else:
            from edgeport.runtime import load
            load({str(seed_run / "artifacts" / "tflite_int8.tflite")!r}, backend="tflm").arena_bytes()
        heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'onnx'))
        print('HEAVY', heavy)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY []" in res.stdout


def test_uint8_quantised_io_file_from_elsewhere(seed_run, tmp_path):
    """A full-integer TFLite file with uint8 input and output (as many files not made by edgeport have): the runtime
    quantises images and dequantises scores with the file's own parameters, and answers as the int8 file does."""
    pytest.importorskip("tensorflow")
    from edgeport.core.data import load_dataset
    from edgeport.train.tf import import_tf, load_keras_model

    tf, _ = import_tf()
    model = load_keras_model(seed_run / "model.keras")
    data = load_dataset(train_limit=600, val_size=100, test_limit=200)
    calib = data.train_images[:200].astype(np.float32) / 255.0
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    path = tmp_path / "foreign_uint8.tflite"
    path.write_bytes(conv.convert())
    m = load(path)
    assert m.input.dtype == "uint8" and m.input.quantized and m.output.dtype == "uint8"
    probs = m.predict(data.test_images)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=0.03)
    int8 = load(seed_run / "artifacts" / "tflite_int8.tflite").predict(data.test_images)
    assert (probs.argmax(1) == int8.argmax(1)).mean() >= 0.97
    assert (probs.argmax(1) == data.test_labels).mean() >= 0.9
