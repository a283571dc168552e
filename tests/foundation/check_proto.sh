#!/usr/bin/env bash
# Compiles proto/ with protoc + the gRPC C++ plugin and with python3 grpc_tools.protoc;
# fails if either fails or prints anything (warnings included).
set -euo pipefail
proto_dir=$1
out=$2
rm -rf "$out" && mkdir -p "$out/cpp" "$out/py"
files=(faceid/v1/faceid.proto grpc/health/v1/health.proto)

cpp_log=$(protoc -I"$proto_dir" --cpp_out="$out/cpp" --grpc_out="$out/cpp" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin "${files[@]}" 2>&1) || { echo "protoc (C++) failed:"; echo "$cpp_log"; exit 1; }
if [ -n "$cpp_log" ]; then echo "protoc (C++) printed:"; echo "$cpp_log"; exit 1; fi
test -s "$out/cpp/faceid/v1/faceid.grpc.pb.h"

# /usr/bin/python3: the python3 on PATH may be a pyenv shim without Debian's modules.
py_log=$(/usr/bin/python3 -m grpc_tools.protoc -I"$proto_dir" --python_out="$out/py" \
  --grpc_python_out="$out/py" "${files[@]}" 2>&1) || { echo "grpc_tools.protoc failed:"; echo "$py_log"; exit 1; }
if [ -n "$py_log" ]; then echo "grpc_tools.protoc printed:"; echo "$py_log"; exit 1; fi
test -s "$out/py/faceid/v1/faceid_pb2_grpc.py"
echo "proto compiles cleanly (C++ and python)"
