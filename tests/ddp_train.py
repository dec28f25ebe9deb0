"""Train a tiny PoLAR + VBLL model; run directly (1 process) or under torchrun (DDP, gloo).

    python tests/ddp_train.py OUT_DIR
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_train.py OUT_DIR

Rank 0 writes OUT_DIR/params.safetensors (final parameters) and OUT_DIR/history.json.
Used by tests/test_training_ddp.py; not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)

from _helpers import SENTIMENT, tiny_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from bayeshead.backbones.huggingface import resolve_model_path  # noqa: E402
from bayeshead.data import TextDataset  # noqa: E402
from bayeshead.training import Trainer  # noqa: E402

OVERRIDES = [
    "adapter.kind=polar", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]",
    "head.kind=vbll_classification", "optimizer.kind=riemannian_adam", "optimizer.lr=0.05",
    "training.batch_size=5", "training.epochs=2", "training.head_steps=2", "training.checkpoint_every=2",
]


def main(out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    model = tiny_model(tokenizer, OVERRIDES, dtype=torch.float64)
    train = TextDataset(*SENTIMENT)
    val = TextDataset(["good fun", "so bad", "lovely", "awful", "meh"], [1, 0, 1, 0, 0])
    trainer = Trainer(model, checkpoint_dir=out / "checkpoints")
    history = trainer.fit(train, val)
    if trainer.ctx.is_main:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "params.safetensors"))
        (out / "history.json").write_text(json.dumps({"world_size": trainer.ctx.world_size, "history": history}))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target)
