"""Tiny Hugging Face models built from `transformers` configs (nothing downloaded).

Each builder seeds torch (`torch.manual_seed(seed)`) right before it builds the
model, so the same arguments give the same weights. The model comes back in
training mode, as `transformers` builds it; callers call `.eval()` where they
need it. `transformers` is imported inside the builders (the "hf" test extra).
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_gpt2(
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    vocab: int = 30,
    positions: int = 8,
    heads: int = 2,
    inner: int | None = None,
    activation: str = "gelu_new",
):
    """A `GPT2LMHeadModel` (bos = eos = token 0; `inner=None` is 4 × hidden)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=layers,
        n_embd=hidden,
        n_head=heads,
        n_inner=inner,
        vocab_size=vocab,
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
        activation_function=activation,
    )
    return GPT2LMHeadModel(config)


def tiny_bert(
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    vocab: int = 30,
    positions: int = 16,
    labels: int | None = None,
):
    """A bare `BertModel`; with `labels`, a `BertForSequenceClassification` of that many."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    extra = {} if labels is None else {"num_labels": labels}
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=positions,
        **extra,
    )
    return BertModel(config) if labels is None else BertForSequenceClassification(config)


def tiny_bert_classifier(*, labels: int = 3, **sizes):
    """A `BertForSequenceClassification` of `labels` classes; `sizes` as for `tiny_bert`."""
    return tiny_bert(labels=labels, **sizes)


def tiny_vit(
    *,
    seed: int = 0,
    image: int = 32,
    patch: int = 8,
    channels: int = 3,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    labels: int = 3,
    activation: str = "gelu",
):
    """A `ViTForImageClassification` on square `channels` × `image` × `image` inputs."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image,
        patch_size=patch,
        num_channels=channels,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        num_labels=labels,
        hidden_act=activation,
    )
    return ViTForImageClassification(config)
