"""The pixel-scaling note on import says what is actually done."""

from types import SimpleNamespace

from edgeport.train.bring import _scale_notes


def test_scale_note_names_mean_and_std_when_given():
    cfg = SimpleNamespace(scale=None, mean=(0.5,), std=(0.25,))
    spec = SimpleNamespace(scale=1 / 255, mean=(0.5,), std=(0.25,))
    (note,) = _scale_notes(None, cfg, spec)
    assert "mean (0.5,)" in note and "std (0.25,)" in note and "[0, 1]" not in note


def test_scale_note_without_mean_std_is_unchanged():
    cfg = SimpleNamespace(scale=None, mean=None, std=None)
    spec = SimpleNamespace(scale=1 / 255, mean=(0.0,), std=(1.0,))
    (note,) = _scale_notes(None, cfg, spec)
    assert "x / 255" in note


def test_unregistered_custom_layer_error_names_class_and_remedy():
    from pathlib import Path

    from edgeport.train.bring import _load_error

    exc = TypeError("Could not locate class 'MyBlock'. Make sure custom classes are decorated with "
                    "`@keras.saving.register_keras_serializable()`. Full object config: " + "{'x': 1}" * 100)
    msg = _load_error(Path("m.keras"), exc)
    assert "'MyBlock'" in msg and "register_keras_serializable" in msg and "SavedModel" in msg
    assert "\n" not in msg and msg.endswith("SavedModel")
