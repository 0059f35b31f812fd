"""Target descriptions claim only what every model gets."""

from edgeport.export.targets import get_target


def test_plain_int8_target_does_not_claim_qat_ranges():
    assert "QAT" not in get_target("tflite_int8").description
