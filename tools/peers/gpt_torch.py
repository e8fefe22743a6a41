#!/usr/bin/env python3
"""fibertrain's model in PyTorch, as the peer a user would pick instead: the same GPT-2-style
decoder (token + position embedding, pre-LN blocks of causal attention and a tanh-GELU MLP,
final LayerNorm, tied head, cross-entropy), the same initialisation, AdamW with the
config's betas, weight decay and clipping, on random tokens of the config's shape.

    tools/peers/gpt_torch.py --config configs/bench-10m.yaml --threads 1
    tools/peers/gpt_torch.py --config configs/gpt2-124m.yaml --device cuda --precision bf16 --compile

Prints one JSON line: the median step time and tokens/s over the timed steps (after
warm-up), with what ran. Attention uses PyTorch's fused scaled_dot_product_attention where
the installed PyTorch has it (2.0 and later), else the written-out softmax(QK^T)V; AdamW is
fused where the installed PyTorch has it for the device (CUDA; CPU from 2.4); bf16 runs
under autocast with fp32 master weights."""
import argparse
import json
import math
import os
import sys
import time


def _cap_threads():
    """--threads N caps every pool PyTorch's CPU kernels use. torch.set_num_threads alone
    leaves a pthreads OpenBLAS (Debian's) on all cores, so a "1 thread" peer would use two:
    the pools read these variables once, when torch loads, so set them before it does."""
    for i, arg in enumerate(sys.argv):
        n = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            sys.argv[i + 1] if arg == "--threads" and i + 1 < len(sys.argv) else None)
        if n and n != "0":
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = n


_cap_threads()
import torch  # noqa: E402  (after the thread caps above)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_proj = nn.Linear(4 * width, width)

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.wte = nn.Embedding(m["vocab"], m["width"])
        self.wpe = nn.Embedding(m["context"], m["width"])
        self.blocks = nn.ModuleList(Block(m["width"], m["heads"]) for _ in range(m["layers"]))
        self.lnf = nn.LayerNorm(m["width"])
        # GPT-2's initialisation, as fibertrain's: normal(0, 0.02), residual projections
        # 0.02 / sqrt(2 L), biases 0, LayerNorms 1.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * m["layers"]) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens, targets):
        T = tokens.size(1)
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def blas():
    """What PyTorch's CPU matrix products run on: MKL (PyPI's x86 wheels), OpenBLAS (Debian's)."""
    config = torch.__config__.show()
    for name in ("MKL", "OpenBLAS", "BLIS"):
        if f"BLAS_INFO={name.lower()}" in config or f"USE_{name.upper()}=ON" in config:
            return name + (" + oneDNN" if "USE_MKLDNN=ON" in config else "")
    return "unknown BLAS"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a fibertrain YAML config (model and train sections)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--batch", type=int, default=0, help="sequences per step (0: the config's train.batch)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    a = p.parse_args()

    cfg = yaml.safe_load(open(a.config)) or {}
    m = {"vocab": 256, "context": 128, "layers": 4, "heads": 4, "width": 128, **cfg.get("model", {})}
    t = {"batch": 16, "lr": 3e-4, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "clip": 1.0,
         **cfg.get("train", {})}
    batch = a.batch or t["batch"]
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    model = Gpt(m).to(dev)
    opt_args = dict(lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], weight_decay=t["weight_decay"])
    opt, adamw = None, "for-loop"
    if "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
        try:  # CPU takes fused from PyTorch 2.4
            opt, adamw = torch.optim.AdamW(model.parameters(), **opt_args, fused=True), "fused"
        except (RuntimeError, ValueError):
            pass
    opt = opt or torch.optim.AdamW(model.parameters(), **opt_args)
    step_fn = torch.compile(model) if a.compile else model
    tokens = torch.randint(0, m["vocab"], (batch, m["context"] + 1), device=dev)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    use_bf16 = a.precision == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=use_bf16):
            loss = step_fn(x, y)
        loss.backward()
        if t["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
        opt.step()
        return loss

    times = []
    for i in range(a.warmup + a.iters):
        if a.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        if a.device == "cuda":
            torch.cuda.synchronize()
        else:
            loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"trainer": "pytorch " + ("compile" if a.compile else "eager"), "torch": torch.__version__,
                      "device": a.device, "precision": a.precision, "threads": torch.get_num_threads(),
                      "parameters": sum(p.numel() for p in model.parameters()), "batch": batch,
                      "step_s": med, "tokens_per_s": batch * m["context"] / med, "sdpa": hasattr(F, "scaled_dot_product_attention"),
                      "adamw": adamw, "blas": blas()}))


if __name__ == "__main__":
    main()
