export TF_CPP_MIN_LOG_LEVEL=2
E=.venv/bin/edgeport
s=$(date +%s.%N)
$E run --model trial/broken.keras --data shapes --targets tflite_fp32,tflite_int8,onnx_fp32,onnx_static_int8 --out runs/broken_md1 --max-drop 1 --val-size 1000 > /tmp/b2_broken.log 2>&1
echo "broken --max-drop 1 rc=$? secs=$(echo "$(date +%s.%N) - $s" | bc)"
$E export runs/mnv2 --targets onnx_static_int8 --no-sensitivity > /tmp/b2_mnv2.log 2>&1; echo "mnv2 onnx rc=$?"
$E eval runs/mnv2/artifacts/onnx_static_int8.onnx --data shapes/test 2>&1 | grep "│"
