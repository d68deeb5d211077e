#!/usr/bin/env python3
"""Train the bundled demo models (development tool; needs torch + transformers, not part of the app).

Trains, from scratch on the synthetic corpus of make_corpus.py (generated on the fly, held-out test
problems excluded):
  moe/    Qwen3MoeForCausalLM: 4 layers, hidden 128, 4 query / 2 KV heads of 32, 16 experts of width 96,
          top-2, norm_topk_prob, router auxiliary loss (output_router_logits, router_aux_loss_coef);
          2.83 M parameters, 0.76 M active per token
  dense/  Qwen3ForCausalLM twin: the same, with one dense SwiGLU MLP of width 2 x 96 = 192, so the
          parameters active per token match the MoE's (up to the router's 16 x 128 per layer); 0.76 M
Loss is on the final assistant turn only (for enable_thinking=false records the prefilled empty think
block belongs to the prompt). Both are saved with save_pretrained (BF16 safetensors by default) plus
tokenizer.json, tokenizer_config.json and generation_config.json: the Hugging Face layout our engine
and transformers load.

Time: the defaults (--steps 7000 per model, batch 32, ~2,850 tokens per step) meet the 88-minute cap
on a 2-core machine (the committed models: MoE 6,683 steps in 61.6 min at 0.33-2 s/step depending on
the machine's other load, dense 3,940 steps in 26.4 min); a GPU (--device cuda) finishes the steps. --minutes (default 88) caps the wall time of the whole run: each model gets its share
and the LR schedule follows whichever of step count or time runs out first, so a capped run still
ends with a decayed learning rate (the log says when the cap, not the step count, ended a model).

Usage:
  python3 train.py                                  # full run, writes moe/ and dense/ here
  python3 train.py --steps 30 --out /tmp/demo_smoke # smoke run
  python3 train.py --device cuda --steps 20000      # longer run on a GPU
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_corpus  # noqa: E402
import train_tokenizer  # noqa: E402

ARCH = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            num_experts=16, num_experts_per_tok=2, moe_intermediate_size=96, max_position_embeddings=2048,
            rope_theta=10000.0, rms_norm_eps=1e-6)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=HERE, help="writes OUT/moe and OUT/dense (default: beside this script)")
    ap.add_argument("--which", choices=["both", "moe", "dense"], default="both")
    ap.add_argument("--steps", type=int, default=7000, help="optimizer steps per model")
    ap.add_argument("--minutes", type=float, default=88, help="wall-time cap for the whole run (0: none)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--aux-coef", type=float, default=0.01, help="router_aux_loss_coef")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "tokenizer"),
                    help="folder with tokenizer.json/tokenizer_config.json (trained first if missing)")
    ap.add_argument("--save-dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--experts-impl", default="grouped_mm", help="transformers experts implementation "
                    "(eager, batched_mm, grouped_mm)")
    ap.add_argument("--eval-per-task", type=int, default=0,
                    help="after training, greedy accuracy on N held-out prompts per task, thinking on/off")
    ap.add_argument("--log-every", type=int, default=50)
    return ap.parse_args()


# --------------------------------------------------------------------------- models


def model_configs(tok_size, ids, aux_coef):
    from transformers import Qwen3Config, Qwen3MoeConfig
    vocab = (tok_size + 63) // 64 * 64
    common = dict(vocab_size=vocab, hidden_size=ARCH["hidden_size"], num_hidden_layers=ARCH["num_hidden_layers"],
                  num_attention_heads=ARCH["num_attention_heads"], num_key_value_heads=ARCH["num_key_value_heads"],
                  head_dim=ARCH["head_dim"], max_position_embeddings=ARCH["max_position_embeddings"],
                  rms_norm_eps=ARCH["rms_norm_eps"], hidden_act="silu", attention_bias=False,
                  tie_word_embeddings=False, use_sliding_window=False, initializer_range=0.02,
                  rope_parameters={"rope_type": "default", "rope_theta": ARCH["rope_theta"]},
                  bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                  pad_token_id=ids["<|endoftext|>"])
    dense_width = ARCH["num_experts_per_tok"] * ARCH["moe_intermediate_size"]
    moe = Qwen3MoeConfig(**common, intermediate_size=dense_width,
                         moe_intermediate_size=ARCH["moe_intermediate_size"], num_experts=ARCH["num_experts"],
                         num_experts_per_tok=ARCH["num_experts_per_tok"], norm_topk_prob=True,
                         decoder_sparse_step=1, mlp_only_layers=[], router_aux_loss_coef=aux_coef,
                         output_router_logits=False)
    dense = Qwen3Config(**common, intermediate_size=dense_width)
    return {"moe": moe, "dense": dense}


def param_counts(model, cfg):
    total = sum(p.numel() for p in model.parameters())
    active = total
    if getattr(cfg, "num_experts", 0):
        per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
        active -= cfg.num_hidden_layers * (cfg.num_experts - cfg.num_experts_per_tok) * per_expert
    return total, active


# --------------------------------------------------------------------------- data


class Batches:
    """Endless tokenized batches: chunks of records, grouped by length to limit padding, shuffled."""

    def __init__(self, tok, seed, batch, pad_id, chunk=2048):
        self.tok, self.batch, self.pad_id, self.chunk = tok, batch, pad_id, chunk
        self.stream = make_corpus.train_stream(seed, make_corpus.load_test_keys())
        self.rng = random.Random(seed + 1)
        self.queue = []
        self.examples = 0

    def encode(self, rec):
        msgs, et = rec["messages"], rec["enable_thinking"]
        prompt = train_tokenizer.render(msgs[:-1], add_generation_prompt=True, enable_thinking=et)
        full = train_tokenizer.render(msgs)
        assert full.startswith(prompt) and full.endswith("<|im_end|>\n"), (prompt, full)
        full = full[:-1]  # the sequence ends at <|im_end|>
        enc = self.tok.encode(full, add_special_tokens=False)
        ids = enc.ids
        labels = [t if start >= len(prompt) else -100 for t, (start, _) in zip(ids, enc.offsets)]
        return ids, labels

    def refill(self):
        seqs = [self.encode(next(self.stream)) for _ in range(self.chunk)]
        self.examples += len(seqs)
        seqs.sort(key=lambda s: len(s[0]))
        groups = [seqs[i:i + self.batch] for i in range(0, len(seqs), self.batch)]
        self.rng.shuffle(groups)
        self.queue.extend(groups)

    def next(self):
        if not self.queue:
            self.refill()
        group = self.queue.pop()
        n = max(len(s[0]) for s in group)
        ids = torch.full((len(group), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(group), n), -100, dtype=torch.long)
        mask = torch.zeros((len(group), n), dtype=torch.long)
        for i, (x, y) in enumerate(group):
            ids[i, :len(x)] = torch.tensor(x)
            labels[i, :len(y)] = torch.tensor(y)
            mask[i, :len(x)] = 1
        return ids, labels, mask


# --------------------------------------------------------------------------- training


def lr_at(progress, step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train_one(name, cfg, tok, ids, args, device, budget_s, log):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = AutoModelForCausalLM.from_config(cfg)
    if name == "moe" and args.experts_impl != "eager":
        model.set_experts_implementation(args.experts_impl)
    model.to(device).train()
    total, active = param_counts(model, cfg)
    print(f"[{name}] params total {total:,} active/token {active:,}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(tok, args.seed, args.batch, ids["<|endoftext|>"])
    use_amp = device.type == "cuda"
    t0, step, hist = time.time(), 0, []
    tokens = 0
    while True:
        elapsed = time.time() - t0
        progress = step / args.steps
        if budget_s:
            progress = max(progress, elapsed / budget_s)
        if progress >= 1.0:
            break
        lr = lr_at(progress, step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, m = (t.to(device) for t in batches.next())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            kw = {"output_router_logits": True} if name == "moe" else {}
            out = model(input_ids=x, attention_mask=m, labels=y, **kw)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += int(m.sum())
        if step % args.log_every == 0 or step == 1:
            aux = float(out.aux_loss.detach()) if getattr(out, "aux_loss", None) is not None else None
            rec = {"step": step, "loss": round(float(out.loss.detach()), 4), "aux": None if aux is None else round(aux, 4),
                   "lr": round(lr, 6), "elapsed_s": round(time.time() - t0, 1), "tokens": tokens}
            hist.append(rec)
            print(f"[{name}] " + " ".join(f"{k} {v}" for k, v in rec.items()), flush=True)
    secs = time.time() - t0
    capped = step < args.steps
    if capped:
        print(f"[{name}] WARNING: the --minutes cap ended training at step {step} of {args.steps}", flush=True)
    print(f"[{name}] done: {step} steps, {batches.examples} examples, {tokens:,} tokens, {secs / 60:.1f} min",
          flush=True)
    log[name] = {"params_total": total, "params_active": active, "steps": step, "capped_by_time": capped,
                 "seconds": round(secs, 1),
                 "tokens": tokens, "examples": batches.examples, "history": hist}
    return model


def save_model(model, name, args, ids):
    from transformers import GenerationConfig
    out = os.path.join(args.out, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    model = model.to("cpu").eval()
    model.config.output_router_logits = False
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], do_sample=True, temperature=0.6, top_p=0.95, top_k=20)
    if args.save_dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(args.tokenizer, f), os.path.join(out, f))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"[{name}] saved {out} ({size / 1e6:.2f} MB)", flush=True)
    return out


# --------------------------------------------------------------------------- quick check


@torch.no_grad()
def quick_eval(folder, n, device):
    """Greedy accuracy with transformers on n held-out prompts per task (a development signal only; the
    model card's numbers come from our engine)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    res = {}
    for task in make_corpus.TASKS:
        with open(os.path.join(make_corpus.DATA_DIR, f"test_{task}.jsonl")) as f:
            probs = [json.loads(line) for line in f][:n]
        for think in (True, False):
            texts = [tok.apply_chat_template([{"role": "user", "content": p["prompt"]}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=think) for p in probs]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            gen = model.generate(**enc, max_new_tokens=320 if think else 40, do_sample=False)
            outs = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            ok = sum(make_corpus.extract_answer(o) == p["answer"] for o, p in zip(outs, probs))
            res[f"{task}/{'think' if think else 'nothink'}"] = ok / len(probs)
    print(f"[{os.path.basename(folder)}] transformers greedy accuracy: " + json.dumps(res), flush=True)
    return res


def main():
    args = parse_args()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}", flush=True)

    if not os.path.exists(os.path.join(args.tokenizer, "tokenizer.json")):
        print(f"training the tokenizer into {args.tokenizer}", flush=True)
        train_tokenizer.save(train_tokenizer.build(1024, 30000, 11), args.tokenizer)
    if not os.path.exists(os.path.join(make_corpus.DATA_DIR, "test_add.jsonl")):
        print("writing the held-out test sets", flush=True)
        os.makedirs(make_corpus.DATA_DIR, exist_ok=True)
        for task, probs in make_corpus.test_sets().items():
            with open(os.path.join(make_corpus.DATA_DIR, f"test_{task}.jsonl"), "w") as f:
                for p in probs:
                    f.write(json.dumps({"task": task, "prompt": p["prompt"], "answer": p["answer"],
                                        "key": p["key"]}) + "\n")
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in train_tokenizer.SPECIAL + train_tokenizer.NOT_SPECIAL}
    cfgs = model_configs(tok.get_vocab_size(), ids, args.aux_coef)

    names = ["moe", "dense"] if args.which == "both" else [args.which]
    # On the CPU a MoE step costs about 2.5x a dense step; split a time cap accordingly.
    share = {"moe": 0.7, "dense": 0.3} if len(names) == 2 else {names[0]: 1.0}
    log = {"args": vars(args), "arch": ARCH}
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        budget = args.minutes * 60 * share[name] if args.minutes else 0
        model = train_one(name, cfgs[name], tok, ids, args, device, budget, log)
        folder = save_model(model, name, args, ids)
        del model
        if args.eval_per_task:
            log[name]["quick_eval"] = quick_eval(folder, args.eval_per_task, device)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)


if __name__ == "__main__":
    main()
