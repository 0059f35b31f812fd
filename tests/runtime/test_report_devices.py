"""The devices section of report.md / report.html: one column group per device that answered, each device's
differences from this machine named, failed devices listed with their reason."""

from edgeport.runtime.report import to_markdown
from edgeport.runtime.report_devices import comparison, html_section


def _report() -> dict:
    host_row = {"name": "tflite_int8", "status": "ok", "accuracy": 0.99, "latency_ms": {"p50": 0.07},
                "model_peak_mb": 5.1}
    pi_row = {"name": "tflite_int8", "status": "ok", "accuracy": 0.985, "accuracy_delta": -0.005,
              "latency_ms": {"p50": 0.9}, "model_peak_mb": 4.8, "agreement_with_host": 0.996, "differs_from_host": 4,
              "differing_indices": [3, 17, 40, 99]}
    return {"run": "r", "artifacts": [host_row], "devices": [
        {"name": "host", "local": True, "status": "ok", "info": {"hostname": "box", "cpus": 8}},
        {"name": "pi4", "status": "ok", "host_key_verified": True, "artifacts": [pi_row], "seconds": 40.2,
         "info": {"hostname": "raspberrypi", "board": "Raspberry Pi 4 Model B", "cpus": 4,
                  "packages": {"edgeport": "0.1.0", "onnxruntime": "1.20.0", "ai-edge-litert": "1.2.0"}}},
        {"name": "jetson", "status": "failed", "error": "connection refused by jetson", "host_key_verified": None,
         "artifacts": []},
    ]}


def test_one_column_group_per_device_that_answered():
    groups, rows = comparison(_report())
    assert [name for name, _ in groups] == ["host", "pi4"]  # the failed device has no columns, only its reason
    assert rows == [["tflite_int8", "0.070", "5.10", "99.00%", "0.900", "4.80", "98.50%", "99.60%"]]


def test_markdown_names_the_differences_and_the_failure():
    md = to_markdown(_report())
    assert "| artifact | host: p50 ms | host: model MB | host: accuracy | pi4: p50 ms |" in md
    assert "pi4: tflite_int8 answers 4 test image(s) differently from this machine (accuracy -0.50 pt; " \
           "indices 3, 17, 40, 99)" in md
    assert "| jetson | failed: connection refused by jetson |" in md
    assert "Raspberry Pi 4 Model B" in md


def test_html_groups_the_columns_under_each_device():
    page = html_section(_report())
    assert "<th colspan='3' style='text-align:center'>host</th><th colspan='4' style='text-align:center'>pi4</th>" \
        in page and "jetson" in page


def test_a_report_without_devices_has_no_devices_section():
    report = _report()
    del report["devices"]
    assert "## Devices" not in to_markdown(report) and html_section(report) == ""
