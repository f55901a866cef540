/* shard/select.h — which tensors of a checkpoint are encoder blocks and which ones quantization
 * touches by default. Shared by `qdist inspect`, the planner and the worker so that every part of
 * the program makes the same choice. */
#ifndef QD_SHARD_SELECT_H
#define QD_SHARD_SELECT_H

#include "shard/safetensors.h"

/* The encoder block number of a tensor name, or -1 when it belongs to no block. Recognised:
 * "<prefix>.encoder.layer.N.", "encoder.layer.N.", "layer.N." (prefix-less BERT), and the
 * same with "layers" or "transformer" in place of "layer"/"encoder" (DistilBERT naming). */
int qd_shard_block_index(const char *name);

/* 1 when the default quantization touches the tensor: a float-like 2-D "*.weight" inside an
 * encoder block (Linear layers); embeddings, norms, biases, pooler and classifier stay float. */
int qd_shard_default_quantizable(const qd_tensor_info *t);

#endif
