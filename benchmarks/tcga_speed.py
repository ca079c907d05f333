"""Time per epoch and test accuracy of CrossAttOmics on TCGA BRCA, against an MLP, run back to back.

Usage: python benchmarks/tcga_speed.py [--threads 1] [--repeats 7] [--epochs 10] [--seeds 3]
       [--baseline results/tcga_speed.before.json] [--tag after]

Measured in one process, at a fixed number of torch threads (default 1), interleaved so that machine load
hits all alike: (1) CrossAttOmics (model class defaults, without the linear path where the class has one:
the original architecture) trained through scvi-tools/Lightning (``model.train`` on the 615 training
patients, validation on the 154 test patients every epoch); (2) the same network in a bare PyTorch loop over
pre-loaded tensors (the cost of the arithmetic, autograd and the optimiser); (3) a plain 256-64 MLP on the
concatenated omics in the same bare loop; (4) a reference network of the same architecture laid out as one
module per modality, edge and target (the package's layout before the batched blocks) in the same bare loop.
The bare loops use the engine's optimiser (AdamW with the multi-tensor update) and, for comparison, AdamW's
fused kernel. Medians over ``--repeats`` repeats of
``--epochs`` epochs each. FLOPs are counted with torch's FlopCounterMode on one training step and compared
with this machine's measured fp32 matrix-multiply peak.

Accuracy on a fixed split (``mx.pp.split``, 20 % test, seed 0): the same CrossAttOmics, trained through the
engine on the training patients with early stopping on a stratified 15 % of them (patience 20, at most
``--max-epochs``), for ``--seeds`` seeds; and the MLP (dropout 0.3, standardised inputs, the same number of
epochs as the first seed's CrossAttOmics run) in the bare loop.

Writes ``results/tcga_speed.{json,md}`` (``--output``); with ``--baseline`` (the JSON of an earlier run, e.g.
before a change), the report puts both runs side by side.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from torch.utils.flop_counter import FlopCounterMode

import multiomix as mx

warnings.filterwarnings("ignore")
logging.getLogger("multiomix").setLevel(logging.WARNING)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)


def matmul_peak(size: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 FLOP/s of a square matrix product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def optimizer(params, fused: bool = False) -> torch.optim.Optimizer:
    """The engine's optimiser, AdamW with the multi-tensor (foreach) update; or AdamW's fused kernel."""
    if fused:
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, fused=True)
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, foreach=True)


def architecture() -> dict:
    """The original CrossAttOmics architecture under the model class defaults (no linear path, if it has one)."""
    parameters = inspect.signature(mx.models.CrossAttOmics.__init__).parameters
    return {"linear_path": None} if "linear_path" in parameters else {}


def quiet() -> dict:
    """Keyword that turns the engine's progress bar off."""
    parameters = inspect.signature(mx.models.CrossAttOmics.train).parameters
    return {"progress_bar": False} if "progress_bar" in parameters else {"enable_progress_bar": False}


def _forward(net, inputs, batch):
    return net({k: v[batch] for k, v in inputs.items()}) if isinstance(inputs, dict) else net(inputs[batch])


def bare_epochs(net, inputs, labels, batch_size, epochs, *, generator=None, fused=False) -> float:
    """Train ``net`` for ``epochs`` epochs in a plain loop; seconds per epoch."""
    opt = optimizer(net.parameters(), fused=fused)
    n = labels.shape[0]
    net.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            loss = torch.nn.functional.cross_entropy(_forward(net, inputs, batch), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def step_flops(net, inputs, labels, batch_size) -> float:
    """FLOPs of one training step (forward and backward)."""
    batch = torch.arange(batch_size)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(_forward(net, inputs, batch), labels[batch]).backward()
    return counter.get_total_flops()


class PerModuleNet(torch.nn.Module):
    """Reference: the same CrossAttOmics network laid out as one module per modality, edge and target.

    One :class:`~multiomix.nn.AttOmicsEncoder` per modality and one :class:`~multiomix.nn.AttentionBlock` per
    ``source -> target`` edge and per target, called one after the other: the layout of the package before the
    batched blocks, timed in the same process so that machine load hits both alike.
    """

    def __init__(self, net, groups: dict, dropout: float):
        super().__init__()
        from multiomix.nn import AttentionBlock, AttOmicsEncoder, MLPHead

        self.graph, self.unimodal = net.graph, net.unimodal
        width = {m: net.token_dim[m] for m in net.modalities}
        self.encoders = torch.nn.ModuleDict({
            m: AttOmicsEncoder(in_features=net.in_features[m], groups=groups[m], group_sizes=[width[m]])
            for m in net.modalities
        })
        self.cross = torch.nn.ModuleDict({
            f"{s}__{t}": AttentionBlock(dim=width[t], source_dim=width[s]) for t, ss in self.graph.items() for s in ss
        })
        self.target = torch.nn.ModuleDict({t: AttentionBlock(dim=width[t]) for t in self.graph})
        hidden = [linear.out_features for linear in net.head.linears]
        self.head = MLPHead(in_dim=net.fused_dim, hidden=hidden, out_dim=net.head.out.out_features, dropout=dropout)

    def forward(self, x):
        tokens = {m: encoder(x[m]) for m, encoder in self.encoders.items()}
        flat = []
        for t, sources in self.graph.items():
            joined = torch.cat([self.cross[f"{s}__{t}"](tokens[t], tokens[s]) for s in sources], dim=1)
            flat.append(self.target[t](joined).flatten(1))
        flat += [tokens[m].flatten(1) for m in self.unimodal]
        return self.head(torch.cat(flat, dim=1))


def mlp(in_dim: int, n_classes: int, dropout: float = 0.0) -> torch.nn.Module:
    """The 256-64 MLP peer."""
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, 256), torch.nn.ReLU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(256, 64), torch.nn.ReLU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(64, n_classes),
    )


def accuracy_runs(mdata, train, test, args) -> dict:
    """Test accuracy of CrossAttOmics (engine, early stopping) per seed and of the MLP (bare loop)."""
    codes = mdata.obs["subtype"].cat.codes.to_numpy()
    inner, validation = train_test_split(train, test_size=0.15, stratify=codes[train], random_state=0)
    out = {"crossattomics": [], "crossattomics_balanced": [], "crossattomics_epochs": [], "mlp": [],
           "mlp_balanced": []}
    for seed in range(args.seeds):
        model = mx.models.CrossAttOmics(mdata, random_state=seed, **architecture())
        model.train(args.max_epochs, train_indices=np.sort(inner), validation_indices=np.sort(validation),
                    early_stopping=True, early_stopping_patience=20, batch_size=args.batch_size, **quiet())
        proba = model.predict_proba(indices=test)
        predicted = proba.to_numpy().argmax(1)
        truth = np.asarray([model.classes.index(str(c)) for c in mdata.obs["subtype"].iloc[test]])
        out["crossattomics"].append(float((predicted == truth).mean()))
        out["crossattomics_balanced"].append(float(balanced_accuracy_score(truth, predicted)))
        out["crossattomics_epochs"].append(int(len(next(iter(model.history.values())))))
    x = np.concatenate([mdata.mod[m].X for m in mdata.mod], axis=1).astype(np.float32)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = torch.as_tensor((x - mean) / std)
    labels = torch.as_tensor(codes, dtype=torch.long)
    epochs = out["crossattomics_epochs"][0]
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        net = mlp(x.shape[1], int(codes.max()) + 1, dropout=0.3)
        shuffle = torch.Generator().manual_seed(seed)
        bare_epochs(net, x[train], labels[train], args.batch_size, epochs, generator=shuffle)
        net.eval()
        with torch.no_grad():
            predicted = net(x[test]).argmax(1).numpy()
        out["mlp"].append(float((predicted == codes[test]).mean()))
        out["mlp_balanced"].append(float(balanced_accuracy_score(codes[test], predicted)))
    return out


def _fmt(value, digits=4):
    return "" if value is None else f"{value:.{digits}f}"


def report_lines(report: dict, baseline: dict | None) -> list[str]:
    """Markdown report of one run, side by side with a baseline run when given."""
    med, acc = report["seconds_per_epoch_median"], report["accuracy"]
    base_med = baseline["seconds_per_epoch_median"] if baseline else {}
    base_acc = baseline["accuracy"] if baseline else {}
    tag, base_tag = report.get("tag") or "this run", (baseline.get("tag") or "baseline") if baseline else None
    head = f"| what | {base_tag} | {tag} |" if baseline else f"| what | {tag} |"
    rule = "|---|---|---|" if baseline else "|---|---|"

    def row(name, new, old=None, digits=4):
        if baseline:
            return f"| {name} | {_fmt(old, digits)} | {_fmt(new, digits)} |"
        return f"| {name} | {_fmt(new, digits)} |"

    speed = [row(f"{k} (s / epoch)", v, base_med.get(k)) for k, v in med.items()]
    ratios = [row(k, v, (baseline or {}).get("ratios", {}).get(k), 2) for k, v in report["ratios"].items()]
    accuracy = [
        row(f"{k} test accuracy (mean of {len(acc[k])} seeds)", float(np.mean(acc[k])),
            float(np.mean(base_acc[k])) if k in base_acc else None, 3)
        for k in ("crossattomics", "crossattomics_balanced", "mlp", "mlp_balanced")
    ]
    lines = [
        "# CrossAttOmics on TCGA BRCA: time per epoch and test accuracy\n",
        f"torch threads {report['threads']}; batch {report['batch_size']} "
        f"({report['steps_per_epoch']} steps per epoch over {report['train_patients']} training patients); "
        f"median of {report['repeats']} repeats x {report['epochs']} epochs, peers interleaved. "
        "The engine epoch includes validation on the 154 test patients.\n",
        head, rule, *speed, *ratios, *accuracy, "",
        f"Per-seed CrossAttOmics accuracy: {', '.join(f'{a:.3f}' for a in acc['crossattomics'])} "
        f"(epochs run with early stopping: {acc['crossattomics_epochs']}); MLP: "
        f"{', '.join(f'{a:.3f}' for a in acc['mlp'])}.",
    ]
    if baseline:
        lines.append(
            f"{base_tag}: CrossAttOmics accuracy per seed {', '.join(f'{a:.3f}' for a in base_acc['crossattomics'])} "
            f"(epochs run: {base_acc['crossattomics_epochs']}); the same script, run just before this one "
            f"(`{report.get('baseline_file', 'baseline')}`), training FLOPs per epoch "
            f"{baseline['train_flops_per_epoch']['crossattomics'] / 1e9:.3f} G, load average "
            f"{baseline['load_average']:.1f}."
        )
    flops, peak = report["train_flops_per_epoch"], report["matmul_peak_flops"]
    lines += [
        "",
        f"Training FLOPs per epoch: CrossAttOmics {flops['crossattomics'] / 1e9:.3f} G, MLP "
        f"{flops['mlp_256_64'] / 1e9:.3f} G; measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s -> arithmetic "
        f"floor {flops['crossattomics'] / peak:.4f} s per epoch for CrossAttOmics.",
        f"Load average when the run ended: {report['load_average']:.1f} on {report['cpu_count']} cores (the machine "
        "is shared; compare runs made back to back).",
        f"Command: `python benchmarks/tcga_speed.py --threads {report['threads']} --repeats {report['repeats']} "
        f"--epochs {report['epochs']} --seeds {report['seeds']}`.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--tag", default="", help="name of this run in the report (e.g. before / after)")
    parser.add_argument("--baseline", default=None, help="JSON of an earlier run to report side by side")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tcga_speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.tcga_brca()
    mx.pp.split(mdata, label_key="subtype", test_size=0.2, random_state=0)
    train = np.flatnonzero(mdata.obs["split"] == "train")
    test = np.flatnonzero(mdata.obs["split"] == "test")
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="subtype")
    torch.manual_seed(0)
    model = mx.models.CrossAttOmics(mdata, **architecture())
    net = model.module.net
    inputs = {m: torch.as_tensor(mdata.mod[m].X[train]) for m in model.modalities}
    labels = torch.as_tensor(mdata.obs["subtype"].cat.codes.to_numpy()[train], dtype=torch.long)
    concatenated = torch.cat(list(inputs.values()), dim=1)
    peer = mlp(concatenated.shape[1], 5)
    # on a package whose network is itself per-module (no batched blocks) there is nothing to compare with
    reference = PerModuleNet(net, model.feature_groups_, dropout=0.3) if hasattr(net, "token_dim") else None
    flops = {
        "crossattomics": step_flops(net, inputs, labels, args.batch_size),
        "mlp_256_64": step_flops(peer, concatenated, labels, args.batch_size),
    }
    n_steps = int(np.ceil(len(train) / args.batch_size))
    times = {"crossattomics_engine": [], "crossattomics_bare_loop": [], "mlp_256_64_bare_loop": [],
             "crossattomics_bare_loop_fused_adamw": [], "mlp_256_64_bare_loop_fused_adamw": [],
             **({"per_module_reference_bare_loop": []} if reference is not None else {})}
    bare_epochs(net, inputs, labels, args.batch_size, 1)  # warm-up
    bare_epochs(peer, concatenated, labels, args.batch_size, 1)
    if reference is not None:
        bare_epochs(reference, inputs, labels, args.batch_size, 1)
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.train(args.epochs, train_indices=train, validation_indices=test, early_stopping=False,
                    batch_size=args.batch_size, **quiet())
        times["crossattomics_engine"].append((time.perf_counter() - start) / args.epochs)
        times["crossattomics_bare_loop"].append(bare_epochs(net, inputs, labels, args.batch_size, args.epochs))
        times["mlp_256_64_bare_loop"].append(bare_epochs(peer, concatenated, labels, args.batch_size, args.epochs))
        times["crossattomics_bare_loop_fused_adamw"].append(
            bare_epochs(net, inputs, labels, args.batch_size, args.epochs, fused=True))
        times["mlp_256_64_bare_loop_fused_adamw"].append(
            bare_epochs(peer, concatenated, labels, args.batch_size, args.epochs, fused=True))
        if reference is not None:
            times["per_module_reference_bare_loop"].append(
                bare_epochs(reference, inputs, labels, args.batch_size, args.epochs))
    peak = matmul_peak()
    medians = {k: float(np.median(v)) for k, v in times.items()}
    epoch_flops = {k: v * n_steps for k, v in flops.items()}
    accuracy = accuracy_runs(mdata, train, test, args)
    report = {
        "tag": args.tag, "threads": args.threads, "batch_size": args.batch_size, "train_patients": len(train),
        "steps_per_epoch": n_steps, "repeats": args.repeats, "epochs": args.epochs, "seeds": args.seeds,
        "seconds_per_epoch_median": medians, "seconds_per_epoch_all": times,
        "ratios": {
            "engine / bare loop": medians["crossattomics_engine"] / medians["crossattomics_bare_loop"],
            "bare loop / MLP": medians["crossattomics_bare_loop"] / medians["mlp_256_64_bare_loop"],
            "engine / MLP": medians["crossattomics_engine"] / medians["mlp_256_64_bare_loop"],
            **({"per-module reference / bare loop": medians["per_module_reference_bare_loop"]
                / medians["crossattomics_bare_loop"]} if reference is not None else {}),
        },
        "train_flops_per_epoch": epoch_flops, "matmul_peak_flops": peak,
        "arithmetic_floor_seconds": {k: v / peak for k, v in epoch_flops.items()},
        "accuracy": accuracy, "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
    }
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    if args.baseline:
        report["baseline_file"] = Path(args.baseline).name
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = report_lines(report, baseline)
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
