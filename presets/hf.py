"""Read a Hugging Face `config.json` from disk (no network) into a ModelShape.

Covers the Llama, Mistral/Mixtral, Qwen2/Qwen2-MoE/Qwen3-MoE, OLMoE and DeepSeek-V2 families and
GPT-2-style keys. Keys this reader does not use are ignored (config.json files carry many)."""

from __future__ import annotations

import json
from pathlib import Path

from explore.models.errors import ConfigError, ExploreError
from explore.models.shapes import ModelShape


def _first(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def shape_from_hf_config(path: str | Path) -> ModelShape:
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the LLM under text_config

    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head")
    vocab = _first(cfg, "vocab_size")
    missing = [n for n, v in (("hidden_size", hidden), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("vocab_size", vocab)) if v is None]
    if missing:
        raise ConfigError(f"{path}: not a transformer config.json: missing {', '.join(missing)}")
    model_type = str(cfg.get("model_type", ""))
    act = str(_first(cfg, "hidden_act", "activation_function", default="silu"))
    gated = act in ("silu", "swiglu", "swish") or "llama" in model_type
    experts = int(_first(cfg, "num_experts", "num_local_experts", "n_routed_experts", default=0))
    kv_lora = int(_first(cfg, "kv_lora_rank", default=0) or 0)
    head_dim = int(_first(cfg, "qk_nope_head_dim", "head_dim", default=hidden // heads))
    shared_inter = int(_first(cfg, "shared_expert_intermediate_size", default=0) or 0)
    if not shared_inter and cfg.get("n_shared_experts"):
        shared_inter = int(cfg["n_shared_experts"]) * int(cfg["moe_intermediate_size"])
    expert_inter = int(_first(cfg, "moe_intermediate_size", "intermediate_size",
                              default=0)) if experts else 0
    dense_layers = int(_first(cfg, "first_k_dense_replace", default=0) or 0) if experts else 0
    gpt2 = "n_embd" in cfg
    try:
        return ModelShape(
            name=str(cfg.get("_name_or_path") or path.parent.name or path.stem),
            layers=int(layers), hidden=int(hidden), heads=int(heads),
            kv_heads=int(_first(cfg, "num_key_value_heads", default=heads)),
            head_dim=head_dim,
            intermediate=int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim",
                                    default=4 * hidden)),
            vocab=int(vocab), gated_ffn=gated,
            norm="layernorm" if gpt2 else "rmsnorm",
            qkv_bias=bool(cfg.get("attention_bias") or model_type.startswith("qwen2")),
            linear_bias=gpt2,
            tied_embeddings=bool(cfg.get("tie_word_embeddings", gpt2)),
            experts=experts,
            experts_per_token=int(_first(cfg, "num_experts_per_tok", "num_experts_per_token",
                                         default=0)) if experts else 0,
            expert_intermediate=expert_inter,
            shared_expert_intermediate=shared_inter,
            shared_expert_gate="shared_expert_intermediate_size" in cfg,
            dense_layers=dense_layers,
            kv_lora_rank=kv_lora,
            q_lora_rank=int(_first(cfg, "q_lora_rank", default=0) or 0),
            qk_rope_head_dim=int(_first(cfg, "qk_rope_head_dim", default=0) or 0) if kv_lora else 0,
            v_head_dim=int(_first(cfg, "v_head_dim", default=0) or 0) if kv_lora else 0,
            source=f"Hugging Face config.json: {path}",
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: unexpected value in config.json: {e}") from None
    except ExploreError as e:
        raise ConfigError(f"{path}: {e}") from None
