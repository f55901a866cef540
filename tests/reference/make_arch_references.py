#!/usr/bin/env python3
"""Tiny random-initialised models of every supported architecture and their float64 outputs.

For each entry of MODELS below, builds the Hugging Face transformers class named in its config
from a small config (hidden 32, 2-4 blocks), re-draws every parameter from a fixed seed (so that
LayerNorms, layer scales and position-bias tables are not their trivial initial values), and
writes into tests/reference/archs/<name>/:

    config.json                 the model's config (save_pretrained)
    model.safetensors           its F32 weights (save_pretrained; some models in other layouts,
                                see LAYOUTS: pytorch_model.bin, sharded safetensors)
    preprocessor_config.json    vision models: the input size qdist uses by default
    reference.safetensors       inputs and the float64 outputs (F64), written by this script with
                                tensors and header keys sorted, so a rerun gives the same bytes

Reference tensors: the inputs (input_ids, attention_mask [, token_type_ids] as I32, or
pixel_values as F64 holding F32 values), hidden.K for K = 0..blocks (the residual stream after
the embeddings and after every block, as transformers' output_hidden_states), and the head's
outputs: logits, pooler_output, sentence_embedding (mask-weighted mean of the last hidden state),
image_embeds. The model runs in float64 (model.double()) from the F32 weights, eager attention,
one thread, CPU.

    PY=$(deploy/pyenv.sh)                                     # torch 2.15, transformers 5.23
    "$PY" tests/reference/make_arch_references.py             # writes every model
    "$PY" tests/reference/make_arch_references.py --check     # recomputes, compares bit for bit
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bert_reference import write_safetensors  # noqa: E402  (sorted, reproducible bytes)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "archs")

# Common small sizes: hidden 32, 4 heads (head size 8), FFN 64.
TEXT = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
            vocab_size=96, max_position_embeddings=40, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
VIS = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
           image_size=16, patch_size=4, num_channels=3, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)

# name -> (class, config class, config kwargs, extra); extra: "pad" (pad token id of the text
# inputs), "input_hw" (pixel size fed to the model when it differs from the config's), "labels"
MODELS = {
    "bert-token": ("BertForTokenClassification", "BertConfig",
                   dict(TEXT, type_vocab_size=2, num_labels=5), dict(pad=0)),
    "roberta-seq": ("RobertaForSequenceClassification", "RobertaConfig",
                    dict(TEXT, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         num_labels=3, layer_norm_eps=1e-5), dict(pad=1)),
    "xlm-roberta-token": ("XLMRobertaForTokenClassification", "XLMRobertaConfig",
                          dict(TEXT, type_vocab_size=1, pad_token_id=1, num_labels=4,
                               layer_norm_eps=1e-5, hidden_act="gelu_new"), dict(pad=1)),
    "distilbert-seq": ("DistilBertForSequenceClassification", "DistilBertConfig",
                       dict(dim=32, n_heads=4, hidden_dim=64, n_layers=2, vocab_size=96,
                            max_position_embeddings=40, dropout=0.0, attention_dropout=0.0,
                            seq_classif_dropout=0.0, num_labels=2, pad_token_id=0), dict(pad=0)),
    "mpnet": ("MPNetModel", "MPNetConfig",
              dict(TEXT, pad_token_id=1, layer_norm_eps=1e-5, relative_attention_num_buckets=32,
                   max_position_embeddings=80), dict(pad=1, long=True)),
    "electra-disc": ("ElectraForPreTraining", "ElectraConfig",
                     dict(TEXT, embedding_size=16, type_vocab_size=2), dict(pad=0)),
    "albert-seq": ("AlbertForSequenceClassification", "AlbertConfig",
                   dict(TEXT, embedding_size=16, num_hidden_layers=4, num_hidden_groups=2,
                        inner_group_num=1, type_vocab_size=2, num_labels=3, pad_token_id=0,
                        hidden_act="gelu_new", classifier_dropout_prob=0.0), dict(pad=0)),
    "beit-cls": ("BeitForImageClassification", "BeitConfig",
                 dict(VIS, use_relative_position_bias=True, use_mean_pooling=True,
                      layer_scale_init_value=0.1, num_labels=3), dict()),
    "beit-shared": ("BeitModel", "BeitConfig",
                    dict(VIS, use_shared_relative_position_bias=True,
                         use_absolute_position_embeddings=True, use_mean_pooling=False,
                         layer_scale_init_value=0.1), dict()),
    "dinov2-cls": ("Dinov2ForImageClassification", "Dinov2Config",
                   dict(VIS, layerscale_value=0.5, num_labels=3, mlp_ratio=2),
                   dict(input_hw=(12, 20))),
    "dinov2-reg": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                   dict(VIS, layerscale_value=0.5, num_register_tokens=2, mlp_ratio=2),
                   dict(input_hw=(12, 12))),
    "clip-vision": ("CLIPVisionModelWithProjection", "CLIPVisionConfig",
                    dict(VIS, projection_dim=8, hidden_act="quick_gelu", layer_norm_eps=1e-5),
                    dict()),
    "clip-cls": ("CLIPForImageClassification", "CLIPConfig",
                 dict(vision_config=dict(VIS, hidden_act="quick_gelu", layer_norm_eps=1e-5),
                      text_config=dict(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                       num_hidden_layers=1, vocab_size=50),
                      num_labels=4), dict()),
}
# Checkpoint layouts other than one model.safetensors (the loader must treat them alike).
LAYOUTS = {"roberta-seq": "bin", "dinov2-cls": "sharded"}
B_TEXT, T_TEXT, B_IMG = 3, 11, 2
T_LONG = 60  # MPNet: long enough for the log-spaced relative position buckets


def redraw(model, gen):
    """Every parameter from N(0, 0.1) (2-D and up), biases N(0, 0.1), norms 1 + N(0, 0.1), layer
    scales 0.5 + N(0, 0.1), position-bias tables N(0, 0.5): away from their trivial inits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            low = name.lower()
            if "norm" in low and name.endswith("weight"):
                v = 1.0 + 0.1 * r
            elif "lambda" in low:
                v = 0.5 + 0.1 * r
            elif "relative" in low:
                v = 0.5 * r
            else:
                v = 0.1 * r
            p.copy_(v.to(p.dtype))


def text_inputs(gen, vocab, pad, long=False):
    T = T_LONG if long else T_TEXT
    ids = torch.randint(4, vocab, (B_TEXT, T), generator=gen)
    lens = [T, T - 3, 5] if not long else [T, T - 17, 9]
    mask = torch.zeros(B_TEXT, T, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
        ids[i, n:] = pad
    return ids, mask


def build(name):
    cls_name, cfg_name, kw, extra = MODELS[name]
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    cfg = getattr(transformers, cfg_name)(**kw)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)._from_config(cfg, attn_implementation="eager")
    redraw(model, gen)
    model = model.float().eval()
    ref = {}
    if "pixel" not in getattr(model, "main_input_name", "input_ids"):
        vocab = cfg.vocab_size
        ids, mask = text_inputs(gen, vocab, extra["pad"], extra.get("long", False))
        feed = dict(input_ids=ids, attention_mask=mask)
        ref["input_ids"] = ids.numpy().astype(np.int32)
        ref["attention_mask"] = mask.numpy().astype(np.int32)
    else:
        vc = cfg.vision_config if hasattr(cfg, "vision_config") else cfg
        h, w = extra.get("input_hw", (vc.image_size, vc.image_size))
        px = torch.randn(B_IMG, vc.num_channels, h, w, generator=gen, dtype=torch.float64).float()
        feed = dict(pixel_values=px)
        ref["pixel_values"] = px.double().numpy()
        mask = None
    return model, feed, ref, extra


@torch.no_grad()
def outputs(model, feed, mask):
    m64 = model.double()
    f = {k: (v.double() if v.is_floating_point() else v) for k, v in feed.items()}
    out = m64(**f, output_hidden_states=True, return_dict=True)
    res = {}
    hs = out.hidden_states
    if hs is None and hasattr(out, "vision_model_output"):
        hs = out.vision_model_output.hidden_states
    for k, h in enumerate(hs):
        res[f"hidden.{k}"] = h.double().numpy()
    for key in ("logits", "pooler_output", "image_embeds"):
        v = getattr(out, key, None)
        if v is not None:
            res[key] = v.double().numpy()
    if mask is not None:
        last = hs[-1].double()
        mk = mask.unsqueeze(-1).double()
        res["sentence_embedding"] = ((last * mk).sum(1) / mk.sum(1).clamp(min=1e-9)).numpy()
    model.float()
    return res


def save_model(model, name, dest, layout):
    tmp = tempfile.mkdtemp()
    try:
        if layout == "sharded":
            model.save_pretrained(tmp, max_shard_size="40KB")
        else:
            model.save_pretrained(tmp)
        if layout == "bin":
            from safetensors.torch import load_file
            sd = load_file(os.path.join(tmp, "model.safetensors"))
            os.remove(os.path.join(tmp, "model.safetensors"))
            torch.save(sd, os.path.join(tmp, "pytorch_model.bin"))
        cfg = json.load(open(os.path.join(tmp, "config.json")))
        # transformers writes its version and dtype; keep the file stable across reruns
        for k in ("transformers_version", "dtype", "torch_dtype"):
            cfg.pop(k, None)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)
            f.write("\n")
        for fn in sorted(os.listdir(tmp)):
            if fn == "generation_config.json":
                continue
            shutil.copy(os.path.join(tmp, fn), os.path.join(dest, fn))
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare, write nothing")
    ap.add_argument("names", nargs="*", help="models to make (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bad = 0
    for name in args.names or MODELS:
        model, feed, ref, extra = build(name)
        res = outputs(model, feed, feed.get("attention_mask"))
        # float32 against float64: the float32 error of transformers itself, for the README
        with torch.no_grad():
            o32 = model(**feed, output_hidden_states=True, return_dict=True)
        hs32 = o32.hidden_states if o32.hidden_states is not None else o32.vision_model_output.hidden_states
        worst = max(float(np.abs(h.double().numpy() - res[f"hidden.{k}"]).max() /
                          np.abs(res[f"hidden.{k}"]).max()) for k, h in enumerate(hs32))
        ref.update(res)
        meta = {"format": "qdist-arch-reference", "version": "1", "model": name,
                "class": type(model).__name__, "torch": torch.__version__.split("+")[0],
                "transformers": transformers.__version__,
                "compute": "float64 from the F32 weights, eager attention"}
        dest = os.path.join(OUT, name)
        if args.check:
            from safetensors.numpy import load_file
            old = load_file(os.path.join(dest, "reference.safetensors"))
            diff = sorted(set(old) ^ set(ref)) + [k for k in sorted(set(old) & set(ref))
                                                   if not np.array_equal(old[k], ref[k])]
            print(f"{name}: " + ("bit-identical" if not diff else f"DIFFERENT: {diff}"))
            bad += bool(diff)
            continue
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.makedirs(dest)
        save_model(model, name, dest, LAYOUTS.get(name, "safetensors"))
        if "pixel_values" in ref:
            vc = model.config.vision_config if hasattr(model.config, "vision_config") else model.config
            h, w = ref["pixel_values"].shape[2:]
            with open(os.path.join(dest, "preprocessor_config.json"), "w") as f:
                json.dump({"do_resize": False, "do_rescale": False, "do_normalize": False,
                           "crop_size": {"height": int(h), "width": int(w)},
                           "size": {"height": int(h), "width": int(w)}}, f, indent=1, sort_keys=True)
                f.write("\n")
        write_safetensors(os.path.join(dest, "reference.safetensors"),
                           {k: (v if v.dtype == np.int32 else v.astype(np.float64)) for k, v in ref.items()},
                           meta)
        size = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
        print(f"{name}: {type(model).__name__}, {len(res)} outputs, {size} bytes, "
              f"float32 transformers vs float64: max rel {worst:.1e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
