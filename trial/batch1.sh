export TF_CPP_MIN_LOG_LEVEL=2
E=.venv/bin/edgeport
T="--targets tflite_fp32,tflite_int8,onnx_fp32,onnx_static_int8"
r() { echo "=== $*"; s=$(date +%s.%N); "$@" > /tmp/out.txt 2>&1; rc=$?; grep -v -i "warning\|absl\|xnnpack\|^[┏┡└]" /tmp/out.txt | tail -${N:-6}; echo "rc=$rc secs=$(echo "$(date +%s.%N) - $s" | bc)"; }
r $E run --model trial/m.keras --data shapes $T --out runs/m --no-sensitivity
grep -c "Quantisation sensitivity" runs/m/report.md
r $E verify runs/m
r $E run --model trial/m.keras --data shapes $T --out runs/bad1 --max-drop -1
r $E run --model trial/m.keras --data shapes $T --out runs/bad2 --max-drop abc
r $E run --model trial/m.keras --data shapes $T --out runs/bad3 --max-drop 0.01
r $E run --model trial/m.keras --data shapes --targets tflite_fp32,onnx_fp32 --out runs/nofloat --max-drop 1
N=12 r $E run --model trial/m.keras --data shapes --recipe trial/keep.toml --out runs/keep
N=12 r $E run --model trial/m.keras --data shapes --recipe trial/keep_typo.toml --out runs/keeptypo
ls runs
