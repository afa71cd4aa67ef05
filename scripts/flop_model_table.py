"""Measured forward times of a results folder next to the FLOP model's prediction.

    python -m scripts.flop_model_table results/speed-h200-ab7ac4a --rates results/profile-h200/kernel-rates-100-dc71793.json

For every ok row, the FLOP model (bench/flops.py) counts the global attention of its plan, the
attention within frames, the rest of the bf16 part and the heads' float32 part (under the row's
`heads_dtype`) for the same frame count and image size. The prediction divides each by a rate measured on the GPU the rows ran
on: the attention kernel's on dense global attention and on single frames, the bf16 GEMM rate of
the backbone's linear layers, the TF32 rate of the heads' convolutions. `--rates` reads all four
from a `scripts/kernel_rates.py` file; a rate option given as well wins. Block-sparse rows that recorded
the share of key blocks they kept are counted at that share, not at the preset's floor. Writes
flop_model.md and flop_model.csv into the results folder.
"""

from __future__ import annotations

from pathlib import Path

import json

import click
import pandas as pd
from tabulate import tabulate

from bench.flops import Rates, count_flops
from bench.methods import resolve_plan
from bench.models import model_traits
from bench.store import ResultStore, read_rows


RATE_KEYS = {  # Rates field → its kernel_rates.json entry
    "global_attention": "attention_dense_cudnn",
    "frame_attention": "attention_frame_cudnn",
    "gemm": "gemm_backbone",
    "float32": "conv_tf32_heads",
}


def measured_rates(path: Path | None) -> dict[str, float]:
    """The rates (TFLOP/s) a `scripts/kernel_rates.py` file holds, by `Rates` field."""
    if path is None:
        return {}
    results = json.loads(path.read_text()).get("results", {})
    missing = [key for key in RATE_KEYS.values() if "tflops" not in results.get(key, {})]
    if missing:
        raise click.BadParameter(f"{path} has no TFLOP/s for {', '.join(missing)}; expected the output of scripts/kernel_rates.py", param_hint="--rates")
    return {option: results[key]["tflops"] for option, key in RATE_KEYS.items()}


@click.command()
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--rates", "rates_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="kernel_rates.json measured on the same GPU")
@click.option("--global-attention-tflops", type=float, help="sustained rate of attention over many frames (cuDNN SDPA, bf16)")
@click.option("--frame-attention-tflops", type=float, help="sustained rate of attention within one frame")
@click.option("--gemm-tflops", type=float, help="sustained bf16 matrix-product rate")
@click.option("--float32-tflops", type=float, help="sustained rate of the heads' float32 work (TF32 convolutions)")
def main(results_dir: Path, rates_file: Path | None, **given: float | None) -> None:
    tflops = {**measured_rates(rates_file), **{key.removesuffix("_tflops"): v for key, v in given.items() if v is not None}}
    missing = [f"--{name.replace('_', '-')}-tflops" for name in RATE_KEYS if name not in tflops]
    if missing:
        raise click.UsageError(f"no rate for {', '.join(missing)}: give --rates (a scripts/kernel_rates.py file) or the option")
    rates = Rates(**{name: value * 1e12 for name, value in tflops.items()})
    rows = [r for r in read_rows(results_dir) if r["status"] == "ok"]
    traits = {name: model_traits(name) for name in {r["model_name"] for r in rows}}
    networks = {name for name, t in traits.items() if t.num_global_layers}
    if set(traits) - networks:  # the oracle computes nothing to count
        print(f"no FLOP model for {', '.join(sorted(set(traits) - networks))}: their rows are left out", flush=True)
    rows = [r for r in rows if r["model_name"] in networks]
    table = []
    for row in sorted(rows, key=lambda r: (r["model_name"], r["frames_used"], r["method"])):
        name = row["model_name"]
        plan = resolve_plan(row["method_name"], row["method_params"], traits[name])
        observed = (row.get("plan") or {}).get("observed")
        heads_dtype = (row.get("model_options") or {}).get("heads_dtype")
        flops = count_flops(name, plan, row["frames_used"], tuple(row["image_size"]), observed, heads_dtype)
        predicted = flops.seconds(rates)
        table.append({
            "model": row["model"], "method": row["method"], "frames": row["frames_used"],
            "key_blocks_kept": (observed or {}).get("key_blocks_kept"),
            "global_attention_tflop": flops.global_attention / 1e12, "frame_attention_tflop": flops.frame_attention / 1e12,
            "other_tflop": flops.other / 1e12, "float32_tflop": flops.float32 / 1e12,
            "predicted_s": predicted, "measured_s": row["time_median_s"], "measured_over_predicted": row["time_median_s"] / predicted,
        })
        print(f"{row['model']} {row['method']} {row['frames_used']}: predicted {predicted:.3f} s, measured {row['time_median_s']:.3f} s", flush=True)
    frame = pd.DataFrame(table).dropna(axis=1, how="all")  # no block-sparse observations: no share column
    store = ResultStore(results_dir)
    store.write_text("flop_model.csv", frame.to_csv(index=False))
    source = f" (measured: `{rates_file.as_posix()}`)" if rates_file else ""
    header = (
        f"FLOP model vs measured: global attention at {tflops['global_attention']:.0f} TFLOP/s, frame attention at "
        f"{tflops['frame_attention']:.0f} TFLOP/s, the rest of the bf16 part at {tflops['gemm']:.0f} TFLOP/s, the heads' "
        f"float32 part at {tflops['float32']:.0f} TFLOP/s{source}.\n\n"
    )
    path = store.write_text("flop_model.md", header + tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".3f") + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
