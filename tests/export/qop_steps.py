"""Where a qoperator ONNX graph of a BERT-family model leaves `qdist eval --integer-only`, step by
step. Not a test: a measurement to run by hand.

    QD_INTMODEL_DUMP=d.bin export_outputs --model M --quantized F.h5 --data SST --n 8 --batch 1 \
        --integer-only --out o.st
    python qop_steps.py F.onnx o.st d.bin

d.bin holds, per sentence, qdist's tensors (runtime/intmodel.c, QD_INTMODEL_DUMP): every
LayerNorm's int32 input and fine output, its int8 codes, each block's q|k|v and context codes.
The graph is run with ONNX Runtime with the matching tensors added as outputs (LayerNormalization
input/output, the QuantizeLinear of q, k, v and context). Per step it prints the largest
difference relative to qdist's largest value, 1 - cosine, and the share of elements that differ.
Then, to separate the requantization from its input, layer 0's q, k, v are requantized from
qdist's own LayerNorm codes the way the graph does it (int32 product x float scale + bias,
QuantizeLinear's half-to-even) and compared with qdist's codes (Q31 multiplier).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper as nh
from safetensors.numpy import load_file


def read_dump(path):
    raw = open(path, "rb").read()
    off, recs = 0, []
    while off < len(raw):
        tag, layer, rows, cols = (int(v) for v in np.frombuffer(raw, np.int32, 4, off))
        off += 16
        recs.append((tag, layer, np.frombuffer(raw, np.float32, rows * cols, off).reshape(rows, cols)))
        off += 4 * rows * cols
    return recs


def main():
    onnx_path, st_path, dump_path = sys.argv[1:4]
    m = onnx.load(onnx_path)
    consts = {i.name: nh.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = nh.to_array(n.attribute[0].t)
    lns = [n for n in m.graph.node if n.op_type == "LayerNormalization"]
    layers = sum(1 for n in m.graph.node if n.op_type == "Softmax")
    sel = {}
    for k in range(layers):
        ql = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.name.startswith(f"layer.{k}.attention/")]
        si = next(i for i, n in enumerate(ql) if "Softmax" in n.input[0])
        ci = next(i for i in range(si + 1, len(ql)) if "Gather" not in ql[i].input[0])
        qi = next(n for n in ql if "Gather" not in n.input[0])  # the main channels of the input
        sel[k] = [ql[si - 3], ql[si - 2], ql[si - 1], ql[ci], qi]
        mq = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.name.startswith(f"layer.{k}.mlp/")
              and "Gather" not in n.input[0]]
        sel[k] += [mq[0], mq[1]]  # the MLP input (LayerNorm codes) and the activation codes, main channels
    extra = [v for n in lns for v in (n.input[0], n.output[0])] + [n.output[0] for k in sel for n in sel[k]]
    have = {o.name for o in m.graph.output}
    for nm in extra:
        if nm not in have:
            m.graph.output.append(onnx.helper.make_value_info(nm, onnx.TypeProto()))
            have.add(nm)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    t = load_file(st_path)
    recs = read_dump(dump_path)
    n = len(t["input_ids"])
    per = len(recs) // n
    stats, req = {}, {}

    def add(key, q, o):
        o = o.reshape(-1, q.shape[1])
        r = min(q.shape[0], o.shape[0])  # qdist's rows beyond the sentence are padding
        q, o = q[:r].astype(np.float64), o[:r].astype(np.float64)
        cos = (o * q).sum() / np.linalg.norm(o) / np.linalg.norm(q)
        stats.setdefault(key, []).append((np.abs(o - q).max() / max(np.abs(q).max(), 1e-30), 1 - cos, np.mean(o != q)))

    for s in range(n):
        tb = int(t["attention_mask"][s].sum())
        feed = {k: t[k][s : s + 1, :tb] for k in ("input_ids", "attention_mask", "token_type_ids") if k in names}
        outs = dict(zip(extra, sess.run(extra, feed)))
        li = n4 = 0
        for tag, layer, q in recs[s * per : (s + 1) * per]:
            if tag in (0, 1):
                nd = lns[li // 2]
                add((layer, 2 + li, "LN input" if tag == 0 else "LN output"), q, outs[nd.input[0] if tag == 0 else nd.output[0]])
                li += 1
            elif tag == 4:  # LayerNorm codes: the embeddings', then per block the MLP's input and the next block's
                if n4 == 0:
                    add((layer, 1.5, "LN codes"), q, outs[sel[0][4].output[0]])
                    x = q.astype(np.int64) - int(consts[sel[0][4].input[2]])
                elif n4 % 2 == 1:
                    add((layer, 3.5, "LN1 codes"), q, outs[sel[layer][5].output[0]])
                elif layer + 1 in sel:
                    add((layer, 9, "LN2 codes"), q, outs[sel[layer + 1][4].output[0]])
                n4 += 1
            elif tag == 5:
                add((layer, 3.7, "act codes"), q, outs[sel[layer][6].output[0]])
            elif tag == 2:
                A = q.shape[1] // 3
                for j, nm in enumerate(("q", "k", "v")):
                    add((layer, 0, nm + " codes"), q[:, j * A : (j + 1) * A], outs[sel[layer][j].output[0]])
                    if layer == 0:
                        lin = ("query", "key", "value")[j]
                        pre = f"encoder.layer.0.attention.self.{lin}."
                        y = (x @ consts[pre + "weight.codes"].astype(np.int64)).astype(np.float32)
                        y = y * consts[pre + "weight.output_scales"] + consts[pre + "bias"]
                        ql = sel[0][j]
                        c = np.clip(np.round(y / consts[ql.input[1]]) + consts[ql.input[2]], -128, 127)
                        d = c != q[:, j * A : (j + 1) * A]
                        e = req.setdefault(nm, [0, 0])
                        e[0] += int(d.sum())
                        e[1] += d.size
            elif tag == 3:
                add((layer, 1, "ctx codes"), q, outs[sel[layer][3].output[0]])
    for key in sorted(stats, key=lambda k: (k[0], k[1])):
        v = np.array(stats[key])
        print(f"layer {key[0]:2d} {key[2]:10s}: max |diff| / max |qdist| {v[:, 0].mean():.2e}  1 - cos {v[:, 1].mean():.2e}"
              f"  differ {100 * v[:, 2].mean():.2f} %")
    for nm, (d, tot) in req.items():
        print(f"layer  0 {nm} from qdist's LayerNorm codes, requantized as the graph does: {100 * d / tot:.3f} % of codes differ")


if __name__ == "__main__":
    main()
