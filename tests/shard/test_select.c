/* Encoder block numbers and the default quantization selection across BERT/ViT naming. */
#include "qd_test.h"
#include "shard/select.h"

static qd_tensor_info ti(const char *name, int ndim, qd_dtype dt)
{
    qd_tensor_info t = {0};
    t.name = (char *)name;
    t.ndim = ndim;
    t.dtype = dt;
    t.float_like = dt == QD_DT_F32 || dt == QD_DT_F16 || dt == QD_DT_BF16 || dt == QD_DT_F64;
    return t;
}

int main(void)
{
    CHECK_EQ(qd_shard_block_index("vit.encoder.layer.3.attention.attention.query.weight"), 3);
    CHECK_EQ(qd_shard_block_index("bert.encoder.layer.11.output.dense.weight"), 11);
    CHECK_EQ(qd_shard_block_index("roberta.encoder.layer.0.intermediate.dense.bias"), 0);
    CHECK_EQ(qd_shard_block_index("encoder.layer.5.attention.self.key.weight"), 5);
    CHECK_EQ(qd_shard_block_index("layer.2.attention.self.query.weight"), 2);
    CHECK_EQ(qd_shard_block_index("distilbert.transformer.layer.4.ffn.lin1.weight"), 4);
    CHECK_EQ(qd_shard_block_index("model.encoder.layers.7.fc1.weight"), 7);
    CHECK_EQ(qd_shard_block_index("albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.weight"), 1);
    CHECK_EQ(qd_shard_block_index("vision_model.encoder.layers.3.self_attn.q_proj.weight"), 3);
    CHECK_EQ(qd_shard_block_index("mpnet.encoder.relative_attention_bias.weight"), -1);
    CHECK_EQ(qd_shard_block_index("vit.embeddings.position_embeddings"), -1);
    CHECK_EQ(qd_shard_block_index("bert.pooler.dense.weight"), -1);
    CHECK_EQ(qd_shard_block_index("classifier.weight"), -1);
    CHECK_EQ(qd_shard_block_index("encoder.layer.x.weight"), -1);
    CHECK_EQ(qd_shard_block_index("encoder.layer.3"), -1);
    CHECK_EQ(qd_shard_block_index("myencoder.layer.3.w"), -1);
    CHECK_EQ(qd_shard_block_index("decoder.layer.3.w"), -1);
    CHECK_EQ(qd_shard_block_index("encoder.layer.99999999999.w"), -1);
    CHECK_EQ(qd_shard_block_index(""), -1);
    CHECK_EQ(qd_shard_block_index(NULL), -1);

    qd_tensor_info t;
    t = ti("bert.encoder.layer.0.attention.self.query.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 1);
    t = ti("layer.0.output.dense.weight", 2, QD_DT_BF16);
    CHECK_EQ(qd_shard_default_quantizable(&t), 1);
    t = ti("encoder.relative_attention_bias.weight", 2, QD_DT_F32); /* MPNet: a table, not a Linear */
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("electra.embeddings_project.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.encoder.layer.0.attention.self.query.bias", 1, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.encoder.layer.0.attention.output.LayerNorm.weight", 1, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.encoder.layer.0.attention.output.LayerNorm.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.embeddings.word_embeddings.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.pooler.dense.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("classifier.weight", 2, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.encoder.layer.0.attention.self.query.weight", 2, QD_DT_I8);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    t = ti("bert.encoder.layer.0.attention.self.query.weight", 3, QD_DT_F32);
    CHECK_EQ(qd_shard_default_quantizable(&t), 0);
    CHECK_EQ(qd_shard_default_quantizable(NULL), 0);
    QD_TEST_MAIN_END();
}
