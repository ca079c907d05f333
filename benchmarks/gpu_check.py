"""Every fit on a GPU through the same training path, and CrossAttOmics' time per epoch on GPU vs CPU.

Usage: python benchmarks/gpu_check.py [--output DIR]

Synthetic data only (planted interactions, tile bags, motif pairs), so it runs anywhere. For each fit: it trains
with ``accelerator="gpu", devices=1`` and checks that the predictions agree with the same model evaluated on the
CPU. Then CrossAttOmics is trained on 5,000 samples x 700 features for 20 epochs on the GPU and on the CPU
(all cores), and the median seconds per epoch are written to ``<output>/gpu_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mudata as md
import numpy as np
import torch

import multiomix as mx

md.set_options(pull_on_update=False)
mx.settings.progress_bar = False
mx.settings.verbosity = 1


def timed_fit(fit, data, **kwargs) -> tuple[object, float, int]:
    start = time.perf_counter()
    model = fit(data, **kwargs)
    seconds = time.perf_counter() - start
    key = kwargs.get("key_added")
    epochs = len(data.uns[key]["history"]) if key else 0
    return model, seconds, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cpu_threads": torch.get_num_threads()}
    gpu = {"accelerator": "gpu", "devices": 1}

    small = mx.datasets.synthetic_interaction_mudata(600, n_features={"rna": 40, "methylation": 40, "mirna": 20})
    checks = {}
    for name, fit, data, kwargs in [
        ("crossattomics", mx.tl.fit_crossattomics, small.copy(), {"max_epochs": 5}),
        ("unitednet", mx.tl.fit_unitednet, small.copy(), {"max_epochs": 5}),
        ("multimodal_ae", mx.tl.fit_multimodal_ae, small.copy(), {"max_epochs": 5}),
        ("med_crossvit", mx.tl.fit_med_crossvit, mx.datasets.synthetic_tile_bags(200)[0], {"max_epochs": 5}),
        ("genomic_interpreter", mx.tl.fit_genomic_interpreter,
         mx.datasets.planted_motif_pairs(400, length=128, distance=24, n_bins=8), {"max_epochs": 3}),
    ]:
        model, seconds, _ = timed_fit(fit, data, key_added=name, **gpu, **kwargs)
        device = str(next(model.module.parameters()).device)
        if hasattr(model, "predict_proba") and getattr(model, "_logits_output", None) and model.classes:
            on_gpu = model.predict_proba().to_numpy()
            model.module.to("cpu")
            on_cpu = model.predict_proba().to_numpy()
        else:
            on_gpu = np.asarray(model.get_latent_representation() if name != "genomic_interpreter" else model.predict())
            model.module.to("cpu")
            on_cpu = np.asarray(model.get_latent_representation() if name != "genomic_interpreter" else model.predict())
        checks[name] = {"trained_on": device, "seconds": round(seconds, 2),
                        "max_abs_gpu_vs_cpu": float(np.abs(on_gpu - on_cpu).max())}
        print(name, checks[name], flush=True)
    report["fits"] = checks

    big = mx.datasets.synthetic_interaction_mudata(5000, n_features={"rna": 200, "methylation": 400, "mirna": 100})
    speed = {}
    for where, options in (("gpu", gpu), ("cpu", {"accelerator": "cpu", "devices": 1})):
        data = big.copy()
        _, seconds, epochs = timed_fit(mx.tl.fit_crossattomics, data, key_added="speed", max_epochs=20,
                                       early_stopping_patience=100, baseline=False, **options)
        speed[where] = {"seconds": round(seconds, 2), "epochs": epochs, "seconds_per_epoch": seconds / max(epochs, 1)}
        print(where, speed[where], flush=True)
    report["crossattomics_5000x700_20_epochs"] = speed
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    lines = [f"# GPU check ({report['device']}, torch {report['torch']}, {report['cpu_threads']} CPU threads)", "",
             "Command: `python benchmarks/gpu_check.py`. Synthetic data; every fit with",
             "`accelerator='gpu', devices=1`.",
             "", "| fit | trained on | seconds | max abs difference GPU vs CPU predictions |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['trained_on']} | {v['seconds']} | {v['max_abs_gpu_vs_cpu']:.2e} |"
              for k, v in checks.items()]
    lines += ["", "CrossAttOmics, 5,000 samples x 700 features, 20 epochs (fit time includes setup and prediction):",
              "",
              "| device | seconds | s / epoch |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']} | {v['seconds_per_epoch']:.3f} |" for k, v in speed.items()]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
