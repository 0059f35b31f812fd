import numpy as np
import pytest

from edgeport.core.errors import ConfigError, InputError, ModelFileError
from edgeport.core.metadata import file_metadata, spec_of
from edgeport.core.spec import InputSpec, parse_image_size, spec_for_tensor


def test_normalise_scale_mean_std_and_layout():
    spec = InputSpec(2, 3, 3, layout="NCHW", scale=1 / 127.5, mean=(1.0,), std=(1.0, 2.0, 4.0))
    images = np.full((1, 2, 3, 3), 255, np.uint8)
    x = spec.normalise(images)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], [1.0, 0.5, 0.25])


def test_default_spec_is_pixels_over_255_bit_for_bit():
    images = np.random.default_rng(0).integers(0, 256, (4, 5, 5), dtype=np.uint8)
    x = InputSpec(5, 5).normalise(images)
    assert np.array_equal(x, (images.astype(np.float32) / 255.0)[..., None])
    assert np.array_equal(InputSpec(5, 5).normalise(images / 255.0), x)  # [0, 1] floats give the same input


@pytest.mark.parametrize("shape", [(5, 5), (5, 5, 1), (2, 5, 5), (2, 5, 5, 1)])
def test_grayscale_images_in_any_usual_shape(shape):
    assert InputSpec(5, 5).as_batch(np.zeros(shape, np.uint8)).shape[1:] == (5, 5, 1)


def test_wrong_image_shape_names_what_was_expected():
    with pytest.raises(InputError, match=r"expected images of shape \(N, 4, 4, 3\), got \(2, 4, 4\)"):
        InputSpec(4, 4, 3).normalise(np.zeros((2, 4, 4), np.uint8))


@pytest.mark.parametrize("kwargs,match", [
    ({"channels": 2}, "channels must be 1"), ({"layout": "HWC"}, "layout"), ({"scale": 0}, "scale"),
    ({"std": (0.0,)}, "std must be > 0"), ({"channels": 3, "mean": (0.1, 0.2)}, "one per channel"),
    ({"preprocessing": "imagenet"}, "preprocessing must be one of"), ({"resize": "fill"}, "resize mode"),
])
def test_bad_spec_values_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        InputSpec(8, 8, **kwargs)


def test_metadata_round_trip_per_channel():
    spec = InputSpec(32, 24, 3, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     labels=("cat", "dog"), preprocessing="resize", resize="crop")
    md = spec.to_metadata()
    assert md["input_scale"] == "1/255" and md["norm_mean"].startswith("[")
    assert InputSpec.from_metadata(md, InputSpec(1, 1)) == spec
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_spec_for_foreign_tensors():
    assert spec_for_tensor((1, 224, 224, 3)).preprocessing == "resize"
    nchw = spec_for_tensor((-1, 3, 64, 48))
    assert (nchw.layout, nchw.image_shape) == ("NCHW", (64, 48, 3))
    assert spec_for_tensor((-1, 28, 28)).preprocessing == "mnist"
    assert spec_for_tensor((-1, -1, -1, 3)).image_shape == (224, 224, 3)
    with pytest.raises(InputError, match="not an image"):
        spec_for_tensor((1, 10))


def test_spec_of_a_file_notes_its_defaults():
    spec, notes = spec_of({}, (-1, 28, 28, 1), 10, "m.tflite")
    assert spec.labels == tuple("0123456789") and "no edgeport metadata" in notes[0]
    ours = file_metadata(InputSpec(32, 32, 3, labels=("a", "b")), "m", "data")
    spec, notes = spec_of(ours, (1, 32, 32, 3), 2, "ok.onnx")
    assert spec.labels == ("a", "b") and notes == []
    spec, notes = spec_of(ours, (1, 32, 32, 3), 5, "odd.onnx")
    assert spec.labels == ("0", "1", "2", "3", "4") and "do not fit its 5 outputs" in notes[0]
    with pytest.raises(ModelFileError, match="metadata says input"):
        spec_of(ours, (1, 28, 28, 3), 2, "lying.onnx")


def test_image_size_flag():
    assert parse_image_size("32x24") == (32, 24) and parse_image_size("64") == (64, 64)
    with pytest.raises(ConfigError, match="HxW"):
        parse_image_size("big")
