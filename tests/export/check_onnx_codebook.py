"""The K-means weights of an exported ONNX model are the model file's levels, bit for bit: for every
Linear written as a Gather of its codebook, ONNX Runtime computes the gathered [in, out] weight
(the graph cut at the Gather) and it must equal the transpose of the file's dequantized weight
(codebook[r, g(c), q[r, c]], as `qdist export FILE --out DIR` writes it to DIR/model.safetensors)
exactly. Prints one line; exit 1 on a mismatch.

    check_onnx_codebook.py DEQUANTIZED.safetensors MODEL.onnx [--expect N]
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dequantized")
    ap.add_argument("onnx")
    ap.add_argument("--expect", type=int, default=0, help="number of codebook Linears the graph must hold")
    a = ap.parse_args()
    m = onnx.load(a.onnx)
    onnx.checker.check_model(m, full_check=True)
    gathers = [n for n in m.graph.node if n.op_type == "Gather" and n.input[0].endswith(".codebook")]
    if a.expect and len(gathers) != a.expect:
        print(f"FAIL: {len(gathers)} codebook Gathers in {a.onnx}, expected {a.expect}")
        return 1
    # one graph whose outputs are every gathered weight; every input of the cut is an initializer
    del m.graph.output[:]
    for n in gathers:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in s.get_inputs():  # the model's inputs are not read by the cut, but ORT asks for them
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, np.float32 if "float" in i.type else np.int64)
    got = s.run(None, feeds)
    bad = 0
    with safe_open(a.dequantized, "np") as f:
        for n, w in zip(gathers, got):
            name = n.input[0][: -len(".codebook")]
            ref = f.get_tensor(name).T
            if w.shape != ref.shape or not np.array_equal(w.view(np.uint32), ref.astype(np.float32).view(np.uint32)):
                d = np.abs(w - ref).max() if w.shape == ref.shape else float("nan")
                print(f"FAIL: {name}: ONNX weight {w.shape} differs from the file's {ref.shape} (max |diff| {d:.3g})")
                bad += 1
    print(f"{'ok' if not bad else 'FAIL'} codebook Gather: {len(gathers)} Linears, weights bit-identical to the "
          f"file's levels: {len(gathers) - bad}/{len(gathers)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
