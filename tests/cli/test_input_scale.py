"""--input-scale parsing: plain floats and "a/b" with float parts."""

import pytest

from edgeport.cli import _scale
from edgeport.core.errors import ConfigError


@pytest.mark.parametrize("text,want", [("1/255", 1 / 255), ("1/127.5", 1 / 127.5), ("0.5/127.5", 0.5 / 127.5),
                                       ("0.00392", 0.00392), (" 2 ", 2.0), ("1e-3", 1e-3)])
def test_input_scale_accepts_floats_and_float_fractions(text, want):
    assert _scale(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["abc", "1/0", "1/2/3", "-1/255", "0", "nan", "inf", "/255", ""])
def test_bad_input_scale_is_a_one_line_error_naming_it(text):
    with pytest.raises(ConfigError) as err:
        _scale(text)
    msg = str(err.value)
    assert "--input-scale" in msg and repr(text) in msg and "\n" not in msg


def test_bad_input_scale_exits_2_before_any_work(tmp_path, capsys):
    from edgeport.cli import main

    out = tmp_path / "run"
    code = main(["run", "--model", str(tmp_path / "m.keras"), "--data", str(tmp_path), "--input-scale", "1/x",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "'1/x'" in err and "\n" not in err
    assert not out.exists()
