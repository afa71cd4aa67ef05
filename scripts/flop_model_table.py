"""Measured forward times of a results folder next to the FLOP model's prediction.

    python -m scripts.flop_model_table results/speed-h200-ab7ac4a --rates results/profile-h200/kernel-rates-100-dc71793.json

For every ok row, the FLOP model (bench/flops.py) counts the global attention of its plan, the
rest of the bf16 part and the heads' float32 part (under the row's `heads_dtype`) for the same
frame count and image size. The prediction divides each by a rate measured on the GPU the rows ran
on: the attention kernel's on dense global attention, the bf16 GEMM rate of the backbone's linear
layers, the TF32 rate of the heads' convolutions. `--rates` reads all three from a
`scripts/kernel_rates.py` file; a rate option given as well wins. Block-sparse rows that recorded
the share of key blocks they kept are counted at that share, not at the preset's floor. Writes
flop_model.md and flop_model.csv into the results folder.
"""

from __future__ import annotations

from pathlib import Path

import json

import click
import pandas as pd
from tabulate import tabulate

from bench.flops import count_flops
from bench.methods import resolve_plan
from bench.models import model_traits
from bench.store import ResultStore, read_rows


RATE_KEYS = {"attention": "attention_dense_cudnn", "gemm": "gemm_backbone", "float32": "conv_tf32_heads"}  # option → kernel_rates.json entry


def measured_rates(path: Path | None) -> dict[str, float]:
    """The three rates (TFLOP/s) a `scripts/kernel_rates.py` file holds, by option name."""
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
@click.option("--attention-tflops", type=float, help="sustained dense attention rate (cuDNN SDPA, bf16)")
@click.option("--gemm-tflops", type=float, help="sustained bf16 matrix-product rate")
@click.option("--float32-tflops", type=float, help="sustained rate of the heads' float32 work (TF32 convolutions)")
def main(results_dir: Path, rates_file: Path | None, attention_tflops: float | None, gemm_tflops: float | None, float32_tflops: float | None) -> None:
    given = {"attention": attention_tflops, "gemm": gemm_tflops, "float32": float32_tflops}
    rates = {**measured_rates(rates_file), **{k: v for k, v in given.items() if v is not None}}
    missing = [f"--{name}-tflops" for name in RATE_KEYS if name not in rates]
    if missing:
        raise click.UsageError(f"no rate for {', '.join(missing)}: give --rates (a scripts/kernel_rates.py file) or the option")
    rows = [r for r in read_rows(results_dir) if r["status"] == "ok"]
    traits = {name: model_traits(name) for name in {r["model_name"] for r in rows}}
    table = []
    for row in sorted(rows, key=lambda r: (r["model_name"], r["frames_used"], r["method"])):
        name = row["model_name"]
        plan = resolve_plan(row["method_name"], row["method_params"], traits[name])
        observed = (row.get("plan") or {}).get("observed")
        heads_dtype = (row.get("model_options") or {}).get("heads_dtype", "float32")
        flops = count_flops(name, plan, row["frames_used"], tuple(row["image_size"]), observed, heads_dtype)
        predicted = flops.seconds(rates["attention"] * 1e12, rates["gemm"] * 1e12, rates["float32"] * 1e12)
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
        f"FLOP model vs measured: every attention call at {rates['attention']:.0f} TFLOP/s, the rest of the bf16 part at "
        f"{rates['gemm']:.0f} TFLOP/s, the heads' float32 part at {rates['float32']:.0f} TFLOP/s{source}.\n\n"
    )
    path = store.write_text("flop_model.md", header + tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".3f") + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
