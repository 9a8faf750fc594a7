"""Small models shared by the tests/test_lora_*.py files (built from code, no download)."""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    """Embedding -> Linear -> LayerNorm -> Conv1d -> head: one layer of each LoRA-able type."""

    def __init__(self, vocab: int = 50, d: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.lin = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, 3, padding=1)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.tanh(self.lin(self.emb(tokens))))  # (B, T, d)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        return self.head(h.mean(1))  # (B, classes)


def peft_tiny(*, dora: bool = False, lora_bias: bool = False, bias: str = "none",
              r: int = 4, d: int = 16, targets: tuple[str, ...] | None = None) -> nn.Module:
    """``Tiny`` under PEFT LoRA (default targets emb/lin/conv; PEFT refuses ``lora_bias`` on
    embeddings, so then lin/conv), with the head in ``modules_to_save``."""
    from peft import LoraConfig, get_peft_model

    if targets is None:
        targets = ("lin", "conv") if lora_bias else ("emb", "lin", "conv")
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets),
                        modules_to_save=["head"], use_dora=dora, lora_bias=lora_bias, bias=bias)
    return get_peft_model(Tiny(d=d), config)


class MLP(nn.Module):
    def __init__(self, d_in: int = 12, d: int = 24, d_out: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d)
        self.norm = nn.LayerNorm(d)
        self.fc2 = nn.Linear(d, d)
        self.head = nn.Linear(d, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(self.norm(torch.relu(self.fc1(x))))))


def short_names(model: nn.Module) -> dict[int, str]:
    """id(param) -> its name, without PEFT's ``base_model.model.`` prefix."""
    return {id(p): n.replace("base_model.model.", "") for n, p in model.named_parameters()}


def group_of(groups: list[dict], model: nn.Module) -> dict[str, str]:
    """name of each parameter -> name of the group holding it."""
    names = short_names(model)
    return {names[id(p)]: g["name"] for g in groups for p in g["params"]}
