#!/usr/bin/env python3
"""PyTorch eager reference for codebook *training* throughput.

This is the peer of bench/train_throughput.sh (the C++ trainer's benchmark):
both train the same model with the same codebooks, batch, sequence length and
thread count, in the same run, and the ratio of their tokens/s is reported.
Run by hand, never in CI (needs pip torch 2.x and transformers).

What one timed step is: optimizer.zero_grad, forward (causal-LM cross-entropy,
mean over tokens, on random token ids), backward, grad-norm clipping
(max_norm 1.0 over all trained parameters) and optimizer.step (AdamW, lr 1e-3,
betas 0.9/0.999, eps 1e-8, weight decay 0). --warmup steps run first and are
not timed; the median of --steps timed steps is reported. Model construction
and data generation are excluded.

Models (random init, eager attention, no KV cache, train mode):

  tokfsm      GPT-NeoX 4 layers x 128 wide, 4 heads, vocab 11 (the TokFSM toy
              model). Codebooks at every layer: `attn_preproj` (the
              input of attention.dense; a group codebook, one 32-dim member per
              head) and `mlp` (the MLP output; one 128-dim codebook); 1000 codes
              each, k = 1. All model parameters and all codebook parameters
              (codes, LN gamma/beta) are trained.
  gpt2-small  GPT2Config() defaults (124M, vocab 50257). Codebooks
              `attn_preproj` at every layer (input of attn.c_proj; group, one
              64-dim member per head, 12 members), 10,000 codes, k = 8. All
              model weights frozen (requires_grad False); only the codebooks
              are trained. GPT2Config() has dropout 0.1, which is active in
              train mode; --no-dropout sets all dropout probabilities to 0.

The codebook layer follows the original library's (docs/codebooks.md, the
operator; docs/original.md#codebook-loss-modes-backward):
per token and group member u = LayerNorm(x_chunk) (learnable affine, eps 1e-5),
scores = u . C_c / ||C_c|| (inner product = cosine ranking), ids = top-k,
y = mean of the k selected codes, forward returns y. Backward in `aeloss` mode:
dL/du = g (straight-through), dL/dC_c = T_c + R_c with
T_c = (1/k) sum_{(t,j): ids=c} g_t and R_c = 2/(N k) sum_{(t,j): ids=c} (y_t - u_t)
(N = tokens in the call, per member). All members of a group are computed at
once with batched matmuls; there are no per-token Python loops.

Usage:

    python3 bench/train_torch.py --model tokfsm --batch 64 --seq 128 --threads 2
    python3 bench/train_torch.py --model gpt2-small --batch 1 --seq 128 --threads 2 --steps 5

Prints ONE JSON line on stdout:
  {"framework": "pytorch-eager", "model", "batch", "seq", "threads",
   "step_ms_median", "tokens_per_s", "params_trained", "torch", ...}
plus a few extra keys (step_ms_min, step_ms_max, warmup, steps, dropout,
adamw, peak_rss_mb, loss_first, loss_last). --adamw foreach|fused picks
PyTorch's faster optimizer kernels (default: PyTorch's own choice, which on
CPU is the per-tensor loop). Everything else goes to stderr.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class AelossSnap(torch.autograd.Function):
    """y = mean_j C[g, ids[g,t,j]] with the `aeloss` straight-through backward.

    u: [G, N, d] LN outputs, codes: [G, K, d], ids: [G, N, k] (int64).
    Backward (aeloss): grad_u = g; grad_C[g, c] =
    sum over (t, j) with ids[g,t,j] == c of (g_t + (2/N) (y_t - u_t)) / k.
    """

    @staticmethod
    def forward(ctx, u, codes, ids):
        groups, num_codes, dim = codes.shape
        _, tokens, k = ids.shape
        offsets = torch.arange(groups, device=ids.device).view(groups, 1, 1) * num_codes
        flat_ids = (ids + offsets).reshape(-1)
        y = codes.reshape(groups * num_codes, dim).index_select(0, flat_ids)
        y = y.view(groups, tokens, k, dim).mean(dim=2)
        ctx.save_for_backward(u, y, flat_ids)
        ctx.shape = (groups, num_codes, dim, tokens, k)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, y, flat_ids = ctx.saved_tensors
        groups, num_codes, dim, tokens, k = ctx.shape
        grad_u = grad_y if ctx.needs_input_grad[0] else None
        grad_codes = None
        if ctx.needs_input_grad[1]:
            per_token = (grad_y + (2.0 / tokens) * (y - u)) / k  # [G, N, d]
            per_slot = per_token.unsqueeze(2).expand(groups, tokens, k, dim).reshape(-1, dim)
            # Row-wise scatter-add; the embedding backward kernel is several times
            # faster on CPU than index_add_ for many duplicate ids.
            grad_codes = torch.ops.aten.embedding_dense_backward(
                per_slot, flat_ids, groups * num_codes, -1, False)
            grad_codes = grad_codes.view(groups, num_codes, dim)
        return grad_u, grad_codes, None


class GroupCodebook(nn.Module):
    """G independent codebooks over contiguous chunks of the last axis (G = 1: vanilla)."""

    def __init__(self, dim, num_codes, groups, k):
        super().__init__()
        if dim % groups != 0:
            raise ValueError(f"codebook width {dim} is not divisible by {groups} groups")
        self.groups, self.chunk, self.k = groups, dim // groups, k
        self.codes = nn.Parameter(torch.randn(groups, num_codes, self.chunk))  # N(0, 1)
        self.ln_weight = nn.Parameter(torch.ones(groups, self.chunk))
        self.ln_bias = nn.Parameter(torch.zeros(groups, self.chunk))

    def forward(self, x):
        if x.dim() != 3:
            raise ValueError(f"codebook input must be [B, T, D], got shape {tuple(x.shape)}")
        batch, seq, dim = x.shape
        tokens = batch * seq
        chunks = x.reshape(tokens, self.groups, self.chunk).transpose(0, 1)  # [G, N, d]
        u = F.layer_norm(chunks, (self.chunk,), eps=1e-5)
        u = u * self.ln_weight.unsqueeze(1) + self.ln_bias.unsqueeze(1)
        with torch.no_grad():
            unit_codes = self.codes / self.codes.norm(dim=-1, keepdim=True)
            scores = torch.bmm(u, unit_codes.transpose(1, 2))  # [G, N, K]
            if self.k == 1:  # same ids as topk(1) up to ties, and faster
                ids = scores.argmax(dim=-1, keepdim=True)  # [G, N, 1]
            else:
                ids = scores.topk(self.k, dim=-1, sorted=True).indices  # [G, N, k]
            del scores
        y = AelossSnap.apply(u, self.codes, ids)  # [G, N, d]
        return y.transpose(0, 1).reshape(batch, seq, dim)


def build_tokfsm(args):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=11, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=128, rotary_pct=0.25,
        rotary_emb_base=10000, use_parallel_residual=True, hidden_act="gelu",
        tie_word_embeddings=False, bos_token_id=10, eos_token_id=10, use_cache=False)
    if args.no_dropout:
        config.attention_dropout = 0.0
        config.hidden_dropout = 0.0
    model = GPTNeoXForCausalLM._from_config(config, attn_implementation="eager")
    codebooks = nn.ModuleList()
    for layer in model.gpt_neox.layers:
        attn_cb = GroupCodebook(config.hidden_size, 1000, config.num_attention_heads, k=1)
        mlp_cb = GroupCodebook(config.hidden_size, 1000, 1, k=1)
        layer.attention.dense.register_forward_pre_hook(
            lambda module, inputs, cb=attn_cb: (cb(inputs[0]),) + tuple(inputs[1:]))
        layer.mlp.register_forward_hook(lambda module, inputs, output, cb=mlp_cb: cb(output))
        codebooks.extend([attn_cb, mlp_cb])
    model_params = list(model.parameters())
    groups = [{"params": list(codebooks.parameters()), "weight_decay": 0.0},
              {"params": model_params, "weight_decay": 0.0}]
    return model, codebooks, groups, config.vocab_size


def build_gpt2_small(args):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(use_cache=False)
    if args.no_dropout:
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
    model = GPT2LMHeadModel._from_config(config, attn_implementation="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    codebooks = nn.ModuleList()
    for block in model.transformer.h:
        cb = GroupCodebook(config.n_embd, 10000, config.n_head, k=8)
        block.attn.c_proj.register_forward_pre_hook(
            lambda module, inputs, cb=cb: (cb(inputs[0]),) + tuple(inputs[1:]))
        codebooks.append(cb)
    groups = [{"params": list(codebooks.parameters()), "weight_decay": 0.0}]
    return model, codebooks, groups, config.vocab_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tokfsm", "gpt2-small"], required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default",
                        help="AdamW implementation (default: PyTorch's choice, a per-tensor loop on CPU)")
    parser.add_argument("--bf16", action="store_true",
                        help="the forward under torch.autocast('cpu', bfloat16) (fp32 master weights)")
    parser.add_argument("--no-dropout", action="store_true",
                        help="set all dropout probabilities to 0 (GPT-2 defaults are 0.1)")
    args = parser.parse_args()
    if args.batch < 1 or args.seq < 2 or args.threads < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("need --batch >= 1, --seq >= 2, --threads >= 1, --steps >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    build = build_tokfsm if args.model == "tokfsm" else build_gpt2_small
    model, codebooks, param_groups, vocab = build(args)
    max_positions = model.config.max_position_embeddings
    if args.seq > max_positions:
        parser.error(f"--seq {args.seq} exceeds the model's {max_positions} positions")
    model.train()
    codebooks.train()
    trained = [p for g in param_groups for p in g["params"]]
    params_trained = sum(p.numel() for p in trained)
    impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[args.adamw]
    optimizer = torch.optim.AdamW(param_groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **impl)
    input_ids = torch.randint(0, vocab, (args.batch, args.seq))
    log(f"{args.model}: {params_trained:,} trained parameters, batch {args.batch} x {args.seq}, "
        f"{args.threads} threads, torch {torch.__version__}")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, max_norm=1.0)
        optimizer.step()
        return loss.item()

    losses, times_ms = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = step()
        elapsed_ms = (time.perf_counter() - start) * 1e3
        losses.append(loss)
        timed = i >= args.warmup
        if timed:
            times_ms.append(elapsed_ms)
        log(f"step {i}{'' if timed else ' (warm-up)'}: {elapsed_ms:.1f} ms, loss {loss:.4f}")

    median_ms = statistics.median(times_ms)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({
        "framework": "pytorch-eager", "model": args.model, "batch": args.batch,
        "seq": args.seq, "threads": args.threads,
        "step_ms_median": round(median_ms, 3),
        "tokens_per_s": round(args.batch * args.seq / (median_ms / 1e3), 1),
        "params_trained": params_trained, "torch": torch.__version__,
        "step_ms_min": round(min(times_ms), 3), "step_ms_max": round(max(times_ms), 3),
        "warmup": args.warmup, "steps": args.steps, "dropout": not args.no_dropout,
        "adamw": args.adamw,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
    }), flush=True)


if __name__ == "__main__":
    main()
