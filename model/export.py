"""Export a DeepSpeed-MoE checkpoint to one safetensors file, and load it back.

DeepSpeed writes a checkpoint tag as mp_rank_00_model_states.pt (the shared parameters under "module")
plus one layer_{l}_expert_{e}_mp_rank_00_model_states.pt per MoE layer and global expert, whose keys
already carry the global expert index. Its zero_to_fp32 cannot merge those expert files; merging is a
union of the dicts, after which the names are those of the ep_size=1 model.
"""

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.checkpoint_integrity import LATEST_FILE, read_latest, verify_tag
from model.config import AttentionConfig, ModelConfig, MoEConfig
from model.transformer import Transformer
from records.canonical import canonical_json

__all__ = ["merged_state_dict", "export_safetensors", "load_safetensors", "model_config_from_dict"]


def merged_state_dict(ckpt_dir: str | Path, tag: str | None = None) -> dict[str, torch.Tensor]:
    """All parameters of checkpoint tag (default: the one named in ckpt_dir/latest), experts merged.
    ValueError when the tag's files differ from its checkpoint_hashes.json (checked before loading; the
    cost grows with the checkpoint's size), or when 'latest' is not a tag name."""
    ckpt_dir = Path(ckpt_dir)
    tag = tag or read_latest(ckpt_dir)
    if tag is None:
        raise ValueError(f"{ckpt_dir}: no {LATEST_FILE} file and no tag given; nothing to export")
    tag_dir = ckpt_dir / tag
    verify_tag(tag_dir)
    state = dict(
        torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)["module"]
    )
    for path in sorted(tag_dir.glob("layer_*_expert_*_mp_rank_00_model_states.pt")):
        expert_state = torch.load(path, map_location="cpu", weights_only=True)
        assert not state.keys() & expert_state.keys(), f"{path} repeats keys"
        state.update(expert_state)
    return state


def export_safetensors(
    ckpt_dir: str | Path, out_path: str | Path, cfg: ModelConfig, tag: str | None = None
) -> Path:
    """Write the checkpoint's parameters, named as in Transformer(cfg, ep_size=1), to out_path, with the
    ModelConfig as JSON in the file's metadata. Tied embeddings are stored once (as tok_emb.weight)."""
    state = merged_state_dict(ckpt_dir, tag)
    if cfg.tie_embeddings:
        state.pop("head.weight", None)
    with torch.device("meta"):
        expected = Transformer(cfg).state_dict()
    if cfg.tie_embeddings:
        expected.pop("head.weight")
    if state.keys() != expected.keys():
        raise ValueError(
            f"checkpoint {ckpt_dir} does not match the config: missing "
            f"{sorted(expected.keys() - state.keys())[:5]}, unexpected "
            f"{sorted(state.keys() - expected.keys())[:5]}"
        )
    for name, tensor in state.items():
        assert tensor.shape == expected[name].shape, name
    tensors = {name: tensor.detach().contiguous() for name, tensor in state.items()}
    out_path = Path(out_path)
    save_file(tensors, out_path, metadata={"model_config": canonical_json(dataclasses.asdict(cfg)).decode()})
    return out_path


def model_config_from_dict(d: dict) -> ModelConfig:
    """Inverse of dataclasses.asdict for ModelConfig."""
    moe = MoEConfig(**d["moe"]) if d["moe"] is not None else None
    return ModelConfig(**{**d, "moe": moe, "attention": AttentionConfig(**d["attention"])})


def load_safetensors(path: str | Path) -> Transformer:
    """The exported model (ep_size=1, eval mode), rebuilt from the config stored in the file."""
    with safe_open(str(path), framework="pt") as f:
        cfg = model_config_from_dict(json.loads(f.metadata()["model_config"]))
        state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    model = Transformer(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and missing == (["head.weight"] if cfg.tie_embeddings else []), (
        missing,
        unexpected,
    )
    return model.eval()
