#!/usr/bin/env python3
"""Token ids Hugging Face's tokenizers give for the SST-2 dev sentences and a multilingual sample.

For each tokenizer below, encodes every sentence of shared/models/data/sst2/dev.tsv (872; not for
the two marked below) and of tests/reference/tokenizers/multilingual.txt (40 lines in many scripts, with NFKC-affected,
combining, zero-width and control characters and odd white space) as a single sequence with the
special tokens (tok(text)["input_ids"]), plus the three pairs of PAIRS, and writes one line per
encoding (ids separated by spaces) to tests/reference/tokenizers/<name>.ids, after a first line
"# sst2+multilingual" or "# multilingual" naming the texts:

    roberta-bpe    RobertaTokenizer from vocab.json + merges.txt (GPT-2's byte-level BPE in
                   RoBERTa's layout, deploy/fetch-models.sh tokenizers)
    xlmr-spm-en    XLM-R's tokenizer made from SentencePiece's English unigram test model
                   (XLMRobertaConverter: Precompiled charsmap, Strip, Replace, Metaspace, Unigram)
    xlmr-spm-ja    the same from the Japanese test model (multilingual sample only)
    mpnet          all-mpnet-base-v2's tokenizer.json (WordPiece, <s> A </s>)
    tiny-unigram   tests/reference/tokenizers/tiny-unigram.json, a hand-written tokenizer.json
                   (multilingual sample only)

    PY=$(deploy/pyenv.sh); deploy/fetch-models.sh tokenizers all-mpnet-base-v2
    "$PY" tests/reference/make_tokenizer_references.py [--check]
"""
import argparse
import os
import subprocess
import sys

import tokenizers
import transformers
from transformers.convert_slow_tokenizer import XLMRobertaConverter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "tokenizers")
PAIRS = [("it 's a charming and often affecting journey .", "unflinchingly bleak and desperate"),
         ("Le cœur a ses raisons", "que la raison ne connaît point."),
         ("東京は日本の首都です。", "서울은 대한민국의 수도입니다.")]


def cache():
    return os.environ.get("QD_CACHE", os.path.join(os.environ["HOME"], ".cache", "qdist"))


def texts(models_dir):
    with open(os.path.join(models_dir, "data", "sst2", "dev.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["sentence", "label"]
    sst = [r[0] for r in rows[1:]]
    with open(os.path.join(OUT, "multilingual.txt"), encoding="utf-8") as f:
        multi = f.read().split("\n")
    if multi and multi[-1] == "":  # the final newline ends the last line
        multi.pop()
    return sst, multi


class _Spm:
    def __init__(self, path):
        self.vocab_file = path
        self.handle_byte_fallback = False

    def convert_tokens_to_ids(self, t):
        return {"<s>": 0, "</s>": 2}[t]


def encoders():
    c = cache()
    # RoBERTa's tokenizer.json pipeline: BPE model, ByteLevel pre-tokenizer without a prefix
    # space, RobertaProcessing (<s> A </s>, pairs </s></s>)
    d = os.path.join(c, "tokenizers", "roberta-bpe")
    rob = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(os.path.join(d, "vocab.json"),
                                                               os.path.join(d, "merges.txt")))
    rob.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    rob.post_processor = tokenizers.processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    yield "roberta-bpe", lambda a, b=None: rob.encode(a, b).ids
    for name, model in (("xlmr-spm-en", "test_model.model"), ("xlmr-spm-ja", "test_ja_model.model")):
        tk = XLMRobertaConverter(_Spm(os.path.join(c, "tokenizers", "spm-test", model))).converted()
        yield name, (lambda tk: lambda a, b=None: tk.encode(a, b).ids)(tk)
    mp = tokenizers.Tokenizer.from_file(os.path.join(c, "models", "all-mpnet-base-v2", "tokenizer.json"))
    mp.no_truncation()
    mp.no_padding()
    yield "mpnet", lambda a, b=None: mp.encode(a, b).ids
    tiny = tokenizers.Tokenizer.from_file(os.path.join(OUT, "tiny-unigram.json"))
    yield "tiny-unigram", lambda a, b=None: tiny.encode(a, b).ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "..", "shared", "models"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "deploy", "fetch-models.sh"), "tokenizers", "all-mpnet-base-v2"],
                   check=True, stdout=subprocess.DEVNULL)
    sst, multi = texts(args.models_dir)
    bad = 0
    for name, enc in encoders():
        # the Japanese model and the hand-written one see the multilingual sample only (their
        # SST-2 encodings are mostly single characters: large files, little news)
        scope = "multilingual" if name in ("xlmr-spm-ja", "tiny-unigram") else "sst2+multilingual"
        ts = multi if scope == "multilingual" else sst + multi
        lines = [f"# {scope}"] + [" ".join(map(str, enc(t))) for t in ts] + \
                [" ".join(map(str, enc(a, b))) for a, b in PAIRS]
        body = "\n".join(lines) + "\n"
        path = os.path.join(OUT, f"{name}.ids")
        if args.check:
            same = open(path, encoding="utf-8").read() == body
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")
            bad += not same
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
            print(f"{name}: {len(lines)} encodings, {os.path.getsize(path)} bytes")
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
