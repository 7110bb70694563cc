"""Read a Hugging Face `config.json` from disk (no network) into a ModelShape.

Covers the Llama (3 and 4), Mistral/Mixtral, Qwen2/Qwen3 (dense and MoE), OLMoE, DeepSeek-V2/V3
(and Kimi K2) and gpt-oss families and GPT-2-style keys: MoE on some layers
(`first_k_dense_replace`, `interleave_moe_layer_step`, `moe_layer_freq`, `decoder_sparse_step`),
sliding-window and chunked attention (`layer_types`, `sliding_window`, `attention_chunk_size`
with `no_rope_layers`), MLA and MTP modules (`num_nextn_predict_layers`). Keys this reader does
not use are ignored (config.json files carry many), except those that change the architecture
in a way the shapes cannot represent (UNSUPPORTED): those are an error naming the key."""

from __future__ import annotations

import json
from pathlib import Path

from explore.models.errors import ConfigError, ExploreError, shown
from explore.models.shapes import ModelShape
from explore.models.spec import NONNEGATIVE

from . import read_text


# keys whose presence means an architecture the shapes do not model (a non-empty value)
UNSUPPORTED = {
    "hc_mult": "hyper-connections",
    "index_topk": "DeepSeek sparse attention (a token indexer)",
    "linear_num_value_heads": "linear-attention layers",
    "full_attn_layers": "hybrid linear/full attention",
    "mlp_only_layers": "dense layers at listed positions",
    "routed_expert_hidden_size": "a latent MoE",
    "ssm_cfg": "state-space (Mamba) layers",
}
ATTENTION_KINDS = {"full_attention": "", "sliding_attention": "sliding",
                   "chunked_attention": "chunked"}


def _first(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def _local_attention(cfg: dict, layers: int) -> tuple[str, int, int]:
    """(kind, window, layers) of local attention: per-layer `layer_types` (gpt-oss, Gemma),
    Llama 4's chunked attention on its RoPE layers (every `no_rope_layer_interval`-th layer,
    default 4, is NoPE and global), Qwen's `use_sliding_window` above `max_window_layers`, or a
    Mistral-style `sliding_window` on every layer."""
    types = cfg.get("layer_types")
    if types:
        unknown = sorted({t for t in types if t not in ATTENTION_KINDS})
        if unknown:
            raise ConfigError(f"cannot interpret layer_types {unknown[0]!r}: explore models "
                              f"{', '.join(ATTENTION_KINDS)}")
        kinds = {ATTENTION_KINDS[t] for t in types} - {""}
        if len(kinds) > 1:
            raise ConfigError("layer_types mixes sliding and chunked attention")
        if not kinds:
            return "", 0, 0
        kind = kinds.pop()
        window = _first(cfg, "sliding_window" if kind == "sliding" else "attention_chunk_size")
        if not window:
            raise ConfigError(f"layer_types has {kind} layers but no window size")
        return kind, int(window), sum(ATTENTION_KINDS[t] == kind for t in types)
    if cfg.get("attention_chunk_size"):
        rope = cfg.get("no_rope_layers")
        if rope is None:
            every = int(cfg.get("no_rope_layer_interval") or 4)
            rope = [int((i + 1) % every != 0) for i in range(layers)]
        return "chunked", int(cfg["attention_chunk_size"]), int(sum(rope))
    window = cfg.get("sliding_window")
    if not window or cfg.get("use_sliding_window") is False:
        return "", 0, 0
    if cfg.get("use_sliding_window"):
        first = int(cfg.get("max_window_layers") or 0)
        return ("sliding", int(window), layers - first) if first < layers else ("", 0, 0)
    return "sliding", int(window), layers


def _int(cfg: dict, *keys: str, default: int | None = None) -> int:
    """The first of `keys` present, as a whole number >= 0 (config.json counts and sizes); a
    ConfigError naming the key otherwise."""
    key = next((k for k in keys if cfg.get(k) is not None), None)
    if key is None:
        if default is None:
            raise ConfigError(f"missing {keys[0]}")
        return default
    value = cfg[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be a whole number, got {shown(value)}")
    NONNEGATIVE.check(value, key)
    return value


def shape_from_hf_config(path: str | Path) -> ModelShape:
    path = Path(path)
    text = read_text(path, "config.json")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:    # 4,300-digit integers, 10^5 nested arrays
        raise ConfigError(f"{path}: cannot read it: {str(e).split(';')[0]}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if cfg.get("text_config") is not None:   # multimodal wrappers keep the LLM there
        cfg = cfg["text_config"]
        if not isinstance(cfg, dict):
            raise ConfigError(f"{path}: text_config must be a JSON object")
    try:
        return _shape(cfg, path)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: unexpected value in config.json: {e}") from None
    except ExploreError as e:
        raise ConfigError(f"{path}: {e}") from None


def _shape(cfg: dict, path: Path) -> ModelShape:
    missing = [n for n, keys in (("hidden_size", ("hidden_size", "n_embd", "d_model")),
                                 ("num_hidden_layers", ("num_hidden_layers", "n_layer",
                                                        "num_layers")),
                                 ("num_attention_heads", ("num_attention_heads", "n_head")),
                                 ("vocab_size", ("vocab_size",)))
               if _first(cfg, *keys) is None]
    if missing:
        raise ConfigError(f"not a transformer config.json: missing {', '.join(missing)}")
    hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(cfg, "num_attention_heads", "n_head")
    vocab = _int(cfg, "vocab_size")
    if not heads:
        raise ConfigError("num_attention_heads must be >= 1, got 0")
    model_type = str(cfg.get("model_type", ""))
    for key, what in UNSUPPORTED.items():
        if cfg.get(key) not in (None, [], 0, 1) or (key == "mlp_only_layers" and cfg.get(key)):
            raise ConfigError(f"cannot interpret {key!r} ({what}): explore's model "
                              f"shapes do not represent it")
    act = str(_first(cfg, "hidden_act", "activation_function", default="silu"))
    gated = act in ("silu", "swiglu", "swish") or "llama" in model_type
    experts = _int(cfg, "num_experts", "num_local_experts", "n_routed_experts", default=0)
    kv_lora = _int(cfg, "kv_lora_rank", default=0)
    head_dim = _int(cfg, "qk_nope_head_dim", "head_dim", default=hidden // heads)
    shared_inter = _int(cfg, "shared_expert_intermediate_size", default=0)
    if not shared_inter and cfg.get("n_shared_experts"):
        if cfg.get("moe_intermediate_size") is None:
            raise ConfigError("n_shared_experts needs moe_intermediate_size (the size of one "
                              "shared expert)")
        shared_inter = _int(cfg, "n_shared_experts") * _int(cfg, "moe_intermediate_size")
    llama4 = model_type.startswith("llama4")
    if llama4 and experts:   # transformers' Llama4TextMoe always adds one shared expert
        shared_inter = _int(cfg, "intermediate_size")
    expert_inter = (_int(cfg, "moe_intermediate_size", "intermediate_size", default=0)
                    if experts else 0)
    dense_layers = _int(cfg, "first_k_dense_replace", default=0) if experts else 0
    aux = _first(cfg, "router_aux_loss_coef", "aux_loss_alpha")    # absent: assume trained with
    gpt2 = "n_embd" in cfg
    local, window, local_layers = _local_attention(cfg, layers)
    name = str(cfg.get("_name_or_path") or path.parent.name or path.stem)
    return ModelShape(
        name=name, layers=layers, hidden=hidden, heads=heads,
        kv_heads=_int(cfg, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        intermediate=_int(cfg, "intermediate_size_mlp", "intermediate_size", "n_inner",
                          "ffn_dim", default=4 * hidden),
        vocab=vocab, gated_ffn=gated,
        norm="layernorm" if gpt2 else "rmsnorm",
        qkv_bias=bool(cfg.get("attention_bias") or model_type.startswith("qwen2")),
        linear_bias=gpt2,
        tied_embeddings=bool(cfg.get("tie_word_embeddings", gpt2)),
        experts=experts,
        experts_per_token=_int(cfg, "num_experts_per_tok", "num_experts_per_token",
                               "experts_per_token", default=0) if experts else 0,
        expert_intermediate=expert_inter,
        shared_expert_intermediate=shared_inter,
        shared_expert_gate="shared_expert_intermediate_size" in cfg,
        router="sigmoid" if cfg.get("scoring_func") == "sigmoid" else "softmax",
        router_aux_loss=aux is None or float(aux) > 0,
        dense_layers=dense_layers,
        moe_layer_step=_int(cfg, "interleave_moe_layer_step", "moe_layer_freq",
                            "decoder_sparse_step", default=1) or 1
        if experts else 1,
        local_attention=local, attention_window=window, local_layers=local_layers,
        mtp_layers=_int(cfg, "num_nextn_predict_layers", default=0),
        kv_lora_rank=kv_lora,
        q_lora_rank=_int(cfg, "q_lora_rank", default=0),
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", default=0) if kv_lora else 0,
        v_head_dim=_int(cfg, "v_head_dim", default=0) if kv_lora else 0,
        source=f"Hugging Face config.json: {path}",
    )
